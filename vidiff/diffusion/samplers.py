"""Samplers: every one is ``sampler(denoiser, x_T, log_snrs, generator=None, callback=None, progress=False) -> x_0``.

`log_snrs` is the noise-level grid, steps + 1 decreasing-noise points from x_T's level to the data
(k-diffusion's `sigmas` in the log-SNR view), built by the caller with `schedules.sampling_grid`, so
the spacing (uniform in time, Karras, uniform in log-SNR) is the caller's choice. The denoiser returns
(x0, eps) estimates for (x_t, log_snr); guidance and parameterisation wrap it outside. Every
coefficient is computed in float64 on the host (as EDM does) from the grid; the state keeps x_T's
dtype on its device (float32: half of float64's memory, and what consumer GPUs and Apple's MPS run
fast). Random draws come from the generator passed in, moved once to the state's device. `callback(i, x0)` is called after every step.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..devices import generator_on, randn
from .objectives import Denoiser

Callback = Callable[[int, Tensor], None]


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise like x (its dtype), drawn where the generator lives: the sampler first
    moves its generator to x's device (devices.generator_on), so a GPU run draws on the GPU."""
    return randn(x.shape, generator, x.device, x.dtype)


def _grid(log_snrs: Tensor) -> list[float]:
    """The grid as float64 numbers on the host: every coefficient below is computed from them in
    float64 with no device sync, and multiplies a state that keeps its own dtype on its device."""
    if log_snrs.ndim != 1 or len(log_snrs) < 2:
        raise ValueError(f"a sampling grid needs at least 2 noise levels, got shape {tuple(log_snrs.shape)}")
    return log_snrs.detach().double().cpu().tolist()


def _ab(log_snr: float) -> tuple[float, float]:
    """(alpha, sigma) of the VP process at this log-SNR, in float64."""
    return math.sqrt(1 / (1 + math.exp(-log_snr))), math.sqrt(1 / (1 + math.exp(log_snr)))


def _steps(grid: list[float], progress: bool, name: str):
    return tqdm(range(len(grid) - 1), disable=not progress, desc=name, leave=False)


def _report(callback: Callback | None, i: int, x0: Tensor) -> None:
    if callback is not None:
        callback(i, x0)


def _denoise(denoiser: Denoiser, x: Tensor, log_snr: float) -> tuple[Tensor, Tensor]:
    x0, eps = denoiser(x, torch.full((x.shape[0],), log_snr, dtype=x.dtype, device=x.device))
    return x0.to(x.dtype), eps.to(x.dtype)


def ddim(denoiser: Denoiser, x_T: Tensor, log_snrs: Tensor, generator: torch.Generator | None = None,
         callback: Callback | None = None, progress: bool = False, eta: float = 0.0, partial: bool = False) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12), generalised by eta: 0 is the deterministic ODE-like sampler,
    1 matches DDPM's ancestral posterior variance. partial: the grid stops short of the data; return x
    at log_snrs[-1] (a partly denoised sample), not the clean estimate."""
    grid, x, generator = _grid(log_snrs), x_T, generator_on(generator, x_T.device)
    for i in _steps(grid, progress, "ddim"):
        x0, eps = _denoise(denoiser, x, grid[i])
        if i == len(grid) - 2 and not partial:  # the last step lands on the data: the clean estimate
            x = x0
        else:
            alpha_t, sigma_t = _ab(grid[i])
            alpha_s, sigma_s = _ab(grid[i + 1])
            # eq. 16: sigma_eta^2 = eta^2 * (sigma_s^2 / sigma_t^2) * (1 - alpha_t^2 / alpha_s^2)
            c = eta * (sigma_s / sigma_t) * math.sqrt(max(1 - (alpha_t / alpha_s) ** 2, 0.0))
            x = alpha_s * x0 + math.sqrt(max(sigma_s ** 2 - c ** 2, 0.0)) * eps
            if eta > 0:
                x = x + c * _noise(x, generator)
        _report(callback, i, x0)
    return x


def ddpm(denoiser: Denoiser, x_T: Tensor, log_snrs: Tensor, generator: torch.Generator | None = None,
         callback: Callback | None = None, progress: bool = False) -> Tensor:
    """Ancestral sampling from the Gaussian posterior q(x_s | x_t, x0_hat) (Ho et al. 2020, eq. 6-7),
    written for arbitrary s < t (Kingma et al. 2021, eq. 33)."""
    grid, x, generator = _grid(log_snrs), x_T, generator_on(generator, x_T.device)
    for i in _steps(grid, progress, "ddpm"):
        x0, _ = _denoise(denoiser, x, grid[i])
        if i == len(grid) - 2:
            x = x0
        else:
            alpha_t, sigma_t = _ab(grid[i])
            alpha_s, sigma_s = _ab(grid[i + 1])
            alpha_ts = alpha_t / alpha_s                      # q(x_t | x_s) = N(alpha_ts x_s, sigma_ts^2)
            sigma_ts2 = sigma_t ** 2 - alpha_ts ** 2 * sigma_s ** 2
            mean = (alpha_ts * sigma_s ** 2 / sigma_t ** 2) * x + (alpha_s * sigma_ts2 / sigma_t ** 2) * x0
            std = math.sqrt(max(sigma_ts2 * sigma_s ** 2 / sigma_t ** 2, 0.0))
            x = mean + std * _noise(x, generator)
        _report(callback, i, x0)
    return x


def dpm_solver_2m(denoiser: Denoiser, x_T: Tensor, log_snrs: Tensor, generator: torch.Generator | None = None,
                  callback: Callback | None = None, progress: bool = False) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): a second-order multistep
    solver of the probability-flow ODE in data prediction, with lambda = log(alpha / sigma) as time.
    The first step is first order (it is DDIM); each later one reuses the previous x0 estimate."""
    grid, x = _grid(log_snrs), x_T
    lambdas = [l / 2 for l in grid]
    previous_x0, previous_h = None, None
    for i in _steps(grid, progress, "dpm++2m"):
        x0, _ = _denoise(denoiser, x, grid[i])
        if i == len(grid) - 2:
            x = x0
        else:
            alpha_s, sigma_s = _ab(grid[i + 1])
            _, sigma_t = _ab(grid[i])
            h = lambdas[i + 1] - lambdas[i]
            if previous_x0 is None:
                d = x0
            else:  # eq. for D_i: linear extrapolation of x0 along lambda, r = h_{i-1} / h_i
                r = previous_h / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous_x0
            x = (sigma_s / sigma_t) * x - alpha_s * math.expm1(-h) * d
            previous_x0, previous_h = x0, h
        _report(callback, i, x0)
    return x


HEUN_SIGMA_MAX = 80.0


def _ve(log_snr: float) -> float:
    """sigma / alpha: the noise level of the scaled variable x / alpha (variance-exploding view)."""
    return math.exp(-log_snr / 2)


def heun(denoiser: Denoiser, x_T: Tensor, log_snrs: Tensor, generator: torch.Generator | None = None,
         callback: Callback | None = None, progress: bool = False, second_order: bool = True) -> Tensor:
    """Heun's method on the probability-flow ODE dx/dsigma = (x - x0) / sigma of the scaled variable
    x / alpha (Karras et al. 2022, "EDM", Algorithm 1 without churn). second_order=False is Euler.
    Each Heun step costs two model calls, except the last. Steps starting above EDM's sigma_max (80)
    are Euler steps: a uniform grid of our schedules starts at sigma ~ 2e4, where the slope changes so
    much over one step that averaging the two ends amplifies the error instead of cancelling it."""
    grid = _grid(log_snrs)
    sigmas = [_ve(l) for l in grid]
    z = x_T / _ab(grid[0])[0]                                     # the scaled variable
    for i in _steps(grid, progress, "heun" if second_order else "euler"):
        x0, _ = _denoise(denoiser, z * _ab(grid[i])[0], grid[i])
        if i == len(grid) - 2:
            z = x0
        else:
            slope = (z - x0) / sigmas[i]
            z_next = z + (sigmas[i + 1] - sigmas[i]) * slope
            if second_order and sigmas[i] <= HEUN_SIGMA_MAX:  # trapezoid: average with the slope at the end
                x0_next, _ = _denoise(denoiser, z_next * _ab(grid[i + 1])[0], grid[i + 1])
                slope_next = (z_next - x0_next) / sigmas[i + 1]
                z_next = z + (sigmas[i + 1] - sigmas[i]) * (slope + slope_next) / 2
            z = z_next
        _report(callback, i, x0)
    return z


def euler(denoiser: Denoiser, x_T: Tensor, log_snrs: Tensor, generator: torch.Generator | None = None,
          callback: Callback | None = None, progress: bool = False) -> Tensor:
    """Euler's method on the probability-flow ODE (first order; see `heun`)."""
    return heun(denoiser, x_T, log_snrs, generator, callback, progress, second_order=False)


def flow_euler(denoiser: Denoiser, x_T: Tensor, log_snrs: Tensor, generator: torch.Generator | None = None,
               callback: Callback | None = None, progress: bool = False) -> Tensor:
    """The rectified-flow ODE dz/dt = eps - x0 integrated with Euler steps in t (Liu et al. 2023), where
    z = x / (alpha + sigma) and t = sigma / (alpha + sigma). It is the sampler flow-matching users
    know; for any model it gives the same path as deterministic DDIM, which is Euler in another chart."""
    grid = _grid(log_snrs)
    scales = [sum(_ab(l)) for l in grid]                           # alpha + sigma
    ts = [_ab(l)[1] / k for l, k in zip(grid, scales)]
    z = x_T / scales[0]
    for i in _steps(grid, progress, "flow-euler"):
        x0, eps = _denoise(denoiser, z * scales[i], grid[i])
        z = x0 if i == len(grid) - 2 else z + (ts[i + 1] - ts[i]) * (eps - x0)
        _report(callback, i, x0)
    return z


SAMPLERS: dict[str, Callable[..., Tensor]] = {"ddim": ddim, "ddpm": ddpm, "dpm++2m": dpm_solver_2m,
                                              "euler": euler, "heun": heun, "flow-euler": flow_euler}
