"""Noise schedules in the continuous-time log-SNR view.

A schedule is a pure function ``t -> log_snr(t)`` on t in [0, 1], decreasing from clean (t=0) to
noise (t=1). Everything downstream (noising, targets, samplers) only sees log-SNR, so samplers do not
care which schedule trained the model (Kingma et al. 2021, "Variational Diffusion Models", sec. 3).
The variance-preserving process is x_t = alpha * x_0 + sigma * eps with
alpha^2 = sigmoid(log_snr) and sigma^2 = sigmoid(-log_snr).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

Schedule = Callable[[Tensor], Tensor]

LOG_SNR_MAX = 20.0   # alpha ~ 1 - 1e-9: indistinguishable from clean data
LOG_SNR_MIN = -20.0  # sigma ~ 1 - 1e-9: indistinguishable from pure noise


def cosine_log_snr(t: Tensor, log_snr_min: float = LOG_SNR_MIN, log_snr_max: float = LOG_SNR_MAX) -> Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021): alpha = cos(pi t / 2), i.e. log_snr = -2 log tan(pi t / 2),
    with t affinely remapped so the endpoints are finite (log_snr_max at t=0, log_snr_min at t=1)."""
    b = math.atan(math.exp(-0.5 * log_snr_max))
    a = math.atan(math.exp(-0.5 * log_snr_min)) - b
    return -2.0 * torch.log(torch.tan(a * t.double() + b)).to(t.dtype)


def linear_log_snr(t: Tensor, beta_min: float = 0.1, beta_max: float = 20.0) -> Tensor:
    """Continuous-time limit of DDPM's linear betas (1e-4 .. 0.02 over 1000 steps; Song et al. 2021):
    alpha_bar(t) = exp(-(beta_min t + (beta_max - beta_min) t^2 / 2)), log_snr = -log(expm1(...))."""
    integral = beta_min * t.double() + 0.5 * (beta_max - beta_min) * t.double() ** 2
    return (-torch.log(torch.expm1(integral))).clamp(max=LOG_SNR_MAX).to(t.dtype)


def rectified_log_snr(t: Tensor, log_snr_min: float = LOG_SNR_MIN, log_snr_max: float = LOG_SNR_MAX) -> Tensor:
    """Rectified flow's straight path z = (1 - t) x0 + t eps (Liu et al. 2023): sigma / alpha = t / (1 - t),
    i.e. log_snr = 2 log((1 - t) / t), with t affinely remapped so the endpoints are finite."""
    lo, hi = 1 / (1 + math.exp(log_snr_max / 2)), 1 / (1 + math.exp(log_snr_min / 2))
    s = lo + (hi - lo) * t.double()
    return (2.0 * (torch.log1p(-s) - torch.log(s))).to(t.dtype)


def shifted(schedule: Schedule, shift: float) -> Schedule:
    """A flow model's time shift (SD3, Esser et al. 2024, eq. 23; Wan's flow_shift): its noise level
    sigma' = k sigma / (1 + (k - 1) sigma) is sigma' / (1 - sigma') = k sigma / (1 - sigma), i.e. the
    log-SNR lowered by 2 log k at every time."""
    offset = 2.0 * math.log(shift)
    return lambda t: schedule(t) - offset


def flow_sigmas_log_snr(sigmas: Tensor) -> Tensor:
    """A flow scheduler's noise levels sigma in [0, 1] (z = (1 - sigma) x0 + sigma eps) as log-SNRs,
    log_snr = 2 log((1 - sigma) / sigma), kept inside [LOG_SNR_MIN, LOG_SNR_MAX] so the ends (pure noise
    and clean data) stay finite."""
    s = sigmas.double()
    return (2.0 * (torch.log1p(-s) - torch.log(s))).clamp(LOG_SNR_MIN, LOG_SNR_MAX)


SCHEDULES: dict[str, Schedule] = {"cosine": cosine_log_snr, "linear": linear_log_snr, "rectified": rectified_log_snr}


def schedule_of(name: str, shift: float = 1.0) -> Schedule:
    """The named schedule, shifted towards noise by `shift` (> 1: every time noisier, so training and
    sampling spend more of their steps where a video's layout and motion are decided; SD3 and Wan shift
    for the same reason at high resolution)."""
    return SCHEDULES[name] if shift == 1.0 else shifted(SCHEDULES[name], shift)


def alpha_sigma(log_snr: Tensor) -> tuple[Tensor, Tensor]:
    """Signal and noise scales of the variance-preserving process at this log-SNR."""
    return torch.sigmoid(log_snr).sqrt(), torch.sigmoid(-log_snr).sqrt()


# Sampling grids: where the steps of a sampler fall. Each returns steps + 1 float64 log-SNRs from the
# noise end to the clean end of `schedule`.
KARRAS_SIGMA_MAX = 80.0   # EDM's sigma_max: above it the data is invisible at 8-bit precision
KARRAS_RHO = 7.0


def uniform_time_grid(schedule: Schedule, steps: int) -> Tensor:
    """Uniform in the schedule's time t (what DDIM and DDPM samplers traditionally use)."""
    return schedule(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64))


def karras_grid(schedule: Schedule, steps: int) -> Tensor:
    """Karras et al. 2022 ("EDM", eq. 5): sigma_i^(1/rho) uniform between sigma_max and sigma_min, rho = 7,
    with sigma = exp(-log_snr / 2); steps concentrate at low noise, where detail is decided. sigma_max
    is capped at EDM's 80: our schedules start at sigma ~ 2e4, and uniform noise there differs from
    noise at 80 by less than the data's quantisation."""
    ends = schedule(torch.tensor([1.0, 0.0], dtype=torch.float64))
    sigma_max, sigma_min = torch.exp(-ends / 2).tolist()
    sigma_max = min(sigma_max, KARRAS_SIGMA_MAX)
    ramp = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    inv = 1.0 / KARRAS_RHO
    sigmas = (sigma_max ** inv + ramp * (sigma_min ** inv - sigma_max ** inv)) ** KARRAS_RHO
    return -2.0 * torch.log(sigmas)


def log_snr_grid(schedule: Schedule, steps: int) -> Tensor:
    """Uniform in log-SNR (DPM-Solver's "logSNR" time steps: equal steps in its ODE time lambda), from
    the noise end (capped like `karras_grid`) to the clean end."""
    ends = schedule(torch.tensor([1.0, 0.0], dtype=torch.float64))
    start = max(ends[0].item(), -2.0 * math.log(KARRAS_SIGMA_MAX))
    return torch.linspace(start, ends[1].item(), steps + 1, dtype=torch.float64)


SPACINGS: dict[str, Callable[[Schedule, int], Tensor]] = {"uniform": uniform_time_grid, "karras": karras_grid,
                                                          "log_snr": log_snr_grid}


def sampling_grid(schedule: Schedule, steps: int, spacing: str = "uniform") -> Tensor:
    """steps + 1 log-SNRs for a sampler, decreasing noise, spaced by `spacing` (a key of SPACINGS)."""
    if steps < 1:
        raise ValueError(f"sampling needs at least 1 step, got {steps}")
    return SPACINGS[spacing](schedule, steps)
