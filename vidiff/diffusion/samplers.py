"""Samplers: every one is ``sampler(denoiser, x_T, schedule, steps, generator=None, ...) -> x_0``.

The denoiser returns (x0, eps) estimates for (x_t, log_snr); guidance and parameterisation wrap it
outside. Update arithmetic runs in float64 (as EDM does) and the random source is passed in.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .objectives import Denoiser
from .schedules import Schedule, alpha_sigma


def time_grid(steps: int, device=None) -> Tensor:
    """Uniform times from 1 (noise) to 0 (data), steps + 1 points, float64."""
    if steps < 1:
        raise ValueError(f"sampling needs at least 1 step, got {steps}")
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=device)


def _denoise64(denoiser: Denoiser, x: Tensor, log_snr: Tensor, dtype) -> tuple[Tensor, Tensor]:
    batch_log_snr = log_snr.expand(x.shape[0]).to(dtype)
    x0, eps = denoiser(x.to(dtype), batch_log_snr)
    return x0.double(), eps.double()


def ddim(denoiser: Denoiser, x_T: Tensor, schedule: Schedule, steps: int,
         generator: torch.Generator | None = None, eta: float = 0.0, progress: bool = False,
         callback: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12), generalised by eta: 0 is the deterministic ODE-like sampler,
    1 matches DDPM's ancestral posterior variance."""
    dtype, x = x_T.dtype, x_T.double()
    log_snrs = schedule(time_grid(steps, x.device))
    for i in tqdm(range(steps), disable=not progress, desc="ddim", leave=False):
        x0, eps = _denoise64(denoiser, x, log_snrs[i], dtype)
        if i == steps - 1:  # the last step lands on the data: return the clean estimate
            x = x0
            break
        alpha_t, sigma_t = alpha_sigma(log_snrs[i])
        alpha_s, sigma_s = alpha_sigma(log_snrs[i + 1])
        # eq. 16: sigma_eta^2 = eta^2 * (sigma_s^2 / sigma_t^2) * (1 - alpha_t^2 / alpha_s^2)
        c = eta * (sigma_s / sigma_t) * (1 - (alpha_t / alpha_s) ** 2).clamp(min=0).sqrt()
        x = alpha_s * x0 + (sigma_s ** 2 - c ** 2).clamp(min=0).sqrt() * eps
        if eta > 0:
            x = x + c * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        if callback is not None:
            callback(i, x0.to(dtype))
    return x.to(dtype)


def ddpm(denoiser: Denoiser, x_T: Tensor, schedule: Schedule, steps: int,
         generator: torch.Generator | None = None, progress: bool = False,
         callback: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """Ancestral sampling from the Gaussian posterior q(x_s | x_t, x0_hat) (Ho et al. 2020, eq. 6-7),
    written for arbitrary s < t (Kingma et al. 2021, eq. 33)."""
    dtype, x = x_T.dtype, x_T.double()
    log_snrs = schedule(time_grid(steps, x.device))
    for i in tqdm(range(steps), disable=not progress, desc="ddpm", leave=False):
        x0, _ = _denoise64(denoiser, x, log_snrs[i], dtype)
        if i == steps - 1:
            x = x0
            break
        alpha_t, sigma_t = alpha_sigma(log_snrs[i])
        alpha_s, sigma_s = alpha_sigma(log_snrs[i + 1])
        alpha_ts = alpha_t / alpha_s                      # q(x_t | x_s) = N(alpha_ts x_s, sigma_ts^2)
        sigma_ts2 = sigma_t ** 2 - alpha_ts ** 2 * sigma_s ** 2
        mean = (alpha_ts * sigma_s ** 2 / sigma_t ** 2) * x + (alpha_s * sigma_ts2 / sigma_t ** 2) * x0
        std = (sigma_ts2 * sigma_s ** 2 / sigma_t ** 2).clamp(min=0).sqrt()
        x = mean + std * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        if callback is not None:
            callback(i, x0.to(dtype))
    return x.to(dtype)


def dpm_solver_2m(denoiser: Denoiser, x_T: Tensor, schedule: Schedule, steps: int,
                  generator: torch.Generator | None = None, progress: bool = False,
                  callback: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): a second-order multistep
    solver of the probability-flow ODE in data prediction, with lambda = log(alpha / sigma) as time.
    The first step is first order (it is DDIM); each later one reuses the previous x0 estimate."""
    dtype, x = x_T.dtype, x_T.double()
    log_snrs = schedule(time_grid(steps, x.device))
    lambdas = log_snrs / 2
    previous_x0, previous_h = None, None
    for i in tqdm(range(steps), disable=not progress, desc="dpm++2m", leave=False):
        x0, _ = _denoise64(denoiser, x, log_snrs[i], dtype)
        if i == steps - 1:
            x = x0
            break
        alpha_s, sigma_s = alpha_sigma(log_snrs[i + 1])
        _, sigma_t = alpha_sigma(log_snrs[i])
        h = lambdas[i + 1] - lambdas[i]
        if previous_x0 is None:
            d = x0
        else:  # eq. for D_i: linear extrapolation of x0 along lambda, r = h_{i-1} / h_i
            r = previous_h / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous_x0
        x = (sigma_s / sigma_t) * x - alpha_s * torch.expm1(-h) * d
        previous_x0, previous_h = x0, h
        if callback is not None:
            callback(i, x0.to(dtype))
    return x.to(dtype)


HEUN_SIGMA_MAX = 80.0


def _ve(log_snr: Tensor) -> Tensor:
    """sigma / alpha: the noise level of the scaled variable x / alpha (variance-exploding view)."""
    return torch.exp(-log_snr / 2)


def heun(denoiser: Denoiser, x_T: Tensor, schedule: Schedule, steps: int,
         generator: torch.Generator | None = None, progress: bool = False, second_order: bool = True,
         callback: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """Heun's method on the probability-flow ODE dx/dsigma = (x - x0) / sigma of the scaled variable
    x / alpha (Karras et al. 2022, "EDM", Algorithm 1 without churn). second_order=False is Euler.
    Each Heun step costs two model calls, except the last. Steps starting above EDM's sigma_max (80)
    are Euler steps: our schedules start at sigma ~ 2e4, where the slope changes so much over one
    step that averaging the two ends amplifies the error instead of cancelling it."""
    dtype, x = x_T.dtype, x_T.double()
    log_snrs = schedule(time_grid(steps, x.device))
    sigmas = _ve(log_snrs)
    z = x / alpha_sigma(log_snrs[0])[0]                        # the scaled variable
    for i in tqdm(range(steps), disable=not progress, desc="heun" if second_order else "euler", leave=False):
        alpha_t, _ = alpha_sigma(log_snrs[i])
        x0, _ = _denoise64(denoiser, z * alpha_t, log_snrs[i], dtype)
        if i == steps - 1:
            z = x0
            break
        slope = (z - x0) / sigmas[i]
        z_next = z + (sigmas[i + 1] - sigmas[i]) * slope
        if second_order and sigmas[i] <= HEUN_SIGMA_MAX:  # trapezoid: average with the slope at the end
            alpha_s, _ = alpha_sigma(log_snrs[i + 1])
            x0_next, _ = _denoise64(denoiser, z_next * alpha_s, log_snrs[i + 1], dtype)
            slope_next = (z_next - x0_next) / sigmas[i + 1]
            z_next = z + (sigmas[i + 1] - sigmas[i]) * (slope + slope_next) / 2
        z = z_next
        if callback is not None:
            callback(i, x0.to(dtype))
    return z.to(dtype)


def euler(denoiser: Denoiser, x_T: Tensor, schedule: Schedule, steps: int,
          generator: torch.Generator | None = None, progress: bool = False,
          callback: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """Euler's method on the probability-flow ODE (first order; see `heun`)."""
    return heun(denoiser, x_T, schedule, steps, generator, progress, second_order=False, callback=callback)


def flow_euler(denoiser: Denoiser, x_T: Tensor, schedule: Schedule, steps: int,
               generator: torch.Generator | None = None, progress: bool = False,
               callback: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """The rectified-flow ODE dz/dt = eps - x0 integrated with Euler steps in t (Liu et al. 2023), where
    z = x / (alpha + sigma) and t = sigma / (alpha + sigma). It is the sampler flow-matching users
    know; for any model it gives the same path as deterministic DDIM, which is Euler in another chart."""
    dtype = x_T.dtype
    log_snrs = schedule(time_grid(steps, x_T.device))
    alphas, sigmas = alpha_sigma(log_snrs)
    ts = sigmas / (alphas + sigmas)
    z = x_T.double() / (alphas[0] + sigmas[0])
    for i in tqdm(range(steps), disable=not progress, desc="flow-euler", leave=False):
        x0, eps = _denoise64(denoiser, z * (alphas[i] + sigmas[i]), log_snrs[i], dtype)
        if i == steps - 1:
            z = x0
            break
        z = z + (ts[i + 1] - ts[i]) * (eps - x0)
        if callback is not None:
            callback(i, x0.to(dtype))
    return z.to(dtype)


SAMPLERS: dict[str, Callable[..., Tensor]] = {"ddim": ddim, "ddpm": ddpm, "dpm++2m": dpm_solver_2m,
                                              "euler": euler, "heun": heun, "flow-euler": flow_euler}


def get_sampler(name: str) -> Callable[..., Tensor]:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler '{name}'; choose one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
