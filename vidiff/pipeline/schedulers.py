"""A model directory's own diffusers flow scheduler (UniPC, flow-match Euler, ...) as one more sampler of
vidiff's loop, beside diffusion.SAMPLERS: the same denoiser (guidance, frame conditioning and context
windows wrap it), driven step for step as the library's pipeline drives the scheduler, so a seed
gives the library's video.

Flow schedulers hold the rectified-flow state z = (1 - s) x0 + s eps and call the model at
timestep = s * num_train_timesteps, which they may round (UniPC gives 999 where s is 1). The
denoiser is asked at the log-SNR of exactly that timestep, so the network sees what the library's
pipeline gives it, and the velocity eps - x0 it returns is what the scheduler steps with.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion import alpha_sigma
from ..diffusion.schedules import LOG_SNR_MAX, LOG_SNR_MIN, flow_sigmas_log_snr

SCHEDULER = "scheduler"      # sampler: the directory's own diffusers scheduler
MODEL_SPACING = "model"      # spacing: that scheduler's noise levels, for vidiff's samplers


def fresh(scheduler, steps: int, device=None):
    """A copy with its timesteps set: a scheduler's state (step index, history) is per call."""
    s = copy.deepcopy(scheduler)
    s.set_timesteps(steps, device=device)
    return s


def model_grid(scheduler, steps: int) -> Tensor:
    """steps + 1 log-SNRs: the scheduler's noise levels, for vidiff's samplers (spacing "model")."""
    return flow_sigmas_log_snr(fresh(scheduler, steps).sigmas.cpu())


def _log_snr(timestep: Tensor, train_steps: int) -> Tensor:
    s = timestep.double() / train_steps
    return (2.0 * (torch.log1p(-s) - torch.log(s))).clamp(LOG_SNR_MIN, LOG_SNR_MAX)


def scheduler_sampler(scheduler):
    """sampler(denoiser, x_T, log_snrs, generator, callback, progress) driving `scheduler`; log_snrs
    must be model_grid's for the same steps (x_T is the VP state at its first level)."""
    def sample(denoiser, x_T: Tensor, log_snrs: Tensor, generator=None, callback=None, progress: bool = False) -> Tensor:
        s = fresh(scheduler, len(log_snrs) - 1, x_T.device)
        train_steps = s.config.num_train_timesteps
        a, b = alpha_sigma(log_snrs[:1].double().cpu())
        z = x_T / float(a + b)                          # the flow state (the noise itself at s = 1)
        for i, t in enumerate(tqdm(s.timesteps, disable=not progress, desc="sampling", leave=False)):
            log_snr = _log_snr(t.cpu(), train_steps)
            a, b = alpha_sigma(log_snr)
            x0, eps = denoiser(z * float(a + b), log_snr.expand(z.shape[0]).to(z.device))
            if callback is not None:
                callback(i, x0)
            z = s.step((eps - x0).to(z.dtype), t, z, return_dict=False)[0]
        return z
    return sample
