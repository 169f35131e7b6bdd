"""Forward noising, training targets (eps / x0 / v / flow) and their losses, and the converters between them.

Prediction types (Salimans & Ho 2022, "Progressive Distillation", sec. 4; Liu et al. 2023 and
Lipman et al. 2023 for flow):
  eps: the noise;  x0: the clean sample;  v = alpha * eps - sigma * x0;
  flow: the rectified-flow velocity eps - x0, predicted from the rectified-flow state
        z = (1 - t) x0 + t eps, which is the VP state divided by (alpha + sigma), t = sigma / (alpha + sigma).
Given x_t and log-SNR, each determines the other two linearly, so guidance and samplers can work on
(x0, eps) pairs regardless of what the network was trained to output. Flow matching is therefore
`prediction: flow` (with `schedule: rectified` for its usual time axis), and every sampler runs it.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .schedules import alpha_sigma

PREDICTIONS = ("eps", "x0", "v", "flow")
WEIGHTINGS = ("none", "min_snr")
TIME_SAMPLINGS = ("uniform", "logit_normal")

# A denoiser maps (x_t, log_snr) to its estimate of (x0, eps); this is what samplers consume.
Denoiser = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _expand(v: Tensor, like: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, ...) so per-sample scalars broadcast over any data shape."""
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim))


def training_times(batch: int, generator: torch.Generator | None = None, sampling: str = "uniform") -> Tensor:
    """Training times in [0, 1]: stratified (one uniform offset, evenly spaced across the batch, VDM's
    low-variance estimator), optionally pushed through the logit-normal quantile (Esser et al. 2024,
    SD3), which spends more of training at middle noise levels where flow models learn the most."""
    u = (torch.rand(1, generator=generator) + torch.arange(batch) / batch) % 1.0
    if sampling == "uniform":
        return u
    if sampling == "logit_normal":
        return torch.sigmoid(torch.special.ndtri(u))
    raise ValueError(f"unknown time sampling '{sampling}'; choose one of: {', '.join(TIME_SAMPLINGS)}")


def add_noise(x0: Tensor, noise: Tensor, log_snr: Tensor) -> Tensor:
    """Sample q(x_t | x_0) = N(alpha x_0, sigma^2 I)."""
    alpha, sigma = alpha_sigma(_expand(log_snr, x0))
    return alpha * x0 + sigma * noise


def _unknown(prediction: str) -> ValueError:
    return ValueError(f"unknown prediction type '{prediction}'; choose one of: {', '.join(PREDICTIONS)}")


def model_input(prediction: str, x_t: Tensor, log_snr: Tensor) -> Tensor:
    """What the network sees for the VP state x_t: x_t itself, or for flow models the rectified-flow
    state z = x_t / (alpha + sigma), whose scale stays near the data's at every noise level."""
    if prediction not in PREDICTIONS:
        raise _unknown(prediction)
    if prediction != "flow":
        return x_t
    alpha, sigma = alpha_sigma(_expand(log_snr, x_t))
    return x_t / (alpha + sigma)


def training_target(prediction: str, x0: Tensor, noise: Tensor, log_snr: Tensor) -> Tensor:
    alpha, sigma = alpha_sigma(_expand(log_snr, x0))
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    if prediction == "v":
        return alpha * noise - sigma * x0
    if prediction == "flow":
        return noise - x0
    raise _unknown(prediction)


def to_x0_eps(prediction: str, output: Tensor, x_t: Tensor, log_snr: Tensor) -> tuple[Tensor, Tensor]:
    """Convert a network output of the given type into (x0, eps) estimates."""
    alpha, sigma = alpha_sigma(_expand(log_snr, x_t))
    if prediction == "eps":
        return (x_t - sigma * output) / alpha, output
    if prediction == "x0":
        return output, (x_t - alpha * output) / sigma
    if prediction == "v":  # alpha^2 + sigma^2 = 1 makes the inversion a rotation
        return alpha * x_t - sigma * output, sigma * x_t + alpha * output
    if prediction == "flow":  # z = (1 - t) x0 + t eps and output = eps - x0
        z, t = x_t / (alpha + sigma), sigma / (alpha + sigma)
        return z - t * output, z + (1 - t) * output
    raise _unknown(prediction)


def loss_weight(prediction: str, log_snr: Tensor, weighting: str = "none", gamma: float = 5.0) -> Tensor:
    """Per-sample weight of the MSE in the prediction's own space.

    'none' is the plain MSE on the target, which weights the equivalent x0-error by SNR (eps),
    1 (x0), SNR + 1 (v) or (sqrt(SNR) + 1)^2 (flow: d(eps - x0) = -dx0 / t at fixed z). 'min_snr' rescales so the x0-error weight is min(SNR, gamma)
    (Hang et al. 2023, "Min-SNR weighting"), which stops easy low-noise steps dominating.
    """
    if weighting == "none":
        return torch.ones_like(log_snr)
    if weighting != "min_snr":
        raise ValueError(f"unknown loss weighting '{weighting}'; choose one of: {', '.join(WEIGHTINGS)}")
    snr = log_snr.exp()
    x0_weight = snr.clamp(max=gamma)
    if prediction not in PREDICTIONS:
        raise _unknown(prediction)
    implied = {"eps": snr, "x0": torch.ones_like(snr), "v": snr + 1.0, "flow": (snr.sqrt() + 1.0) ** 2}[prediction]
    return x0_weight / implied


def diffusion_loss(output: Tensor, x0: Tensor, noise: Tensor, log_snr: Tensor,
                   prediction: str, weighting: str = "none", where: Tensor | None = None) -> Tensor:
    """Weighted MSE between network output and its target; returns the per-sample loss (B,).
    where: a 0/1 tensor broadcastable to x0 (e.g. the unknown frames of a masked-frame sample):
    the mean is taken over those elements only."""
    target = training_target(prediction, x0, noise, log_snr)
    return masked_mse(output, target, where) * loss_weight(prediction, log_snr, weighting)


def masked_mse(output: Tensor, target: Tensor, where: Tensor | None = None) -> Tensor:
    """Per-sample (B,) mean squared error, over the elements where `where` (0/1, broadcastable) is 1."""
    error = (output.float() - target.float()).pow(2)
    if where is None:
        return error.flatten(1).mean(1)
    where = where.to(error.dtype).expand_as(error)
    return (error * where).flatten(1).sum(1) / where.flatten(1).sum(1).clamp_min(1)


def make_denoiser(model_fn: Callable[[Tensor, Tensor], Tensor], prediction: str,
                  clip_x0: float | None = None) -> Denoiser:
    """Wrap a raw network ``model_fn(x_t, log_snr) -> output`` into a denoiser returning (x0, eps).

    clip_x0 clamps the x0 estimate to the data range and recomputes eps to match, the standard
    trick for pixel-space models (Ho et al. 2020) that keeps early, noisy estimates in range.
    """
    def denoise(x_t: Tensor, log_snr: Tensor) -> tuple[Tensor, Tensor]:
        output = model_fn(model_input(prediction, x_t, log_snr), log_snr).to(x_t.dtype)
        x0, eps = to_x0_eps(prediction, output, x_t, log_snr)
        if clip_x0 is not None:
            alpha, sigma = alpha_sigma(_expand(log_snr, x_t))
            x0 = x0.clamp(-clip_x0, clip_x0)
            eps = (x_t - alpha * x0) / sigma
        return x0, eps
    return denoise
