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


SCHEDULES: dict[str, Schedule] = {"cosine": cosine_log_snr, "linear": linear_log_snr, "rectified": rectified_log_snr}


def get_schedule(name: str) -> Schedule:
    if name not in SCHEDULES:
        raise ValueError(f"unknown noise schedule '{name}'; choose one of: {', '.join(SCHEDULES)}")
    return SCHEDULES[name]


def alpha_sigma(log_snr: Tensor) -> tuple[Tensor, Tensor]:
    """Signal and noise scales of the variance-preserving process at this log-SNR."""
    return torch.sigmoid(log_snr).sqrt(), torch.sigmoid(-log_snr).sqrt()
