"""The denoising loop: model + classifier-free guidance + frame conditioning + sampler. Training uses
it for sample sheets, VideoPipeline for everything it generates."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..config import DiffusionConfig
from ..diffusion import SAMPLERS, SCHEDULES, classifier_free_guidance, make_denoiser, sampling_grid
from ..diffusion.conditioning import frame_condition, reconstruction_guidance, replacement
from ..models import TextToVideoModel

# how known frames condition the sample: a masked-frame model's own input (trained), or any model
# with VDM's reconstruction guidance or the plain replacement baseline (diffusion/conditioning.py)
METHODS = ("trained", "guidance", "replacement")


@torch.no_grad()
def sample_video(model: TextToVideoModel, diffusion: DiffusionConfig, ids: Tensor,
                 shape: tuple[int, int, int, int], steps: int = 25, guidance_scale: float = 3.0,
                 sampler: str = "ddim", eta: float = 0.0, generator: torch.Generator | None = None,
                 progress: bool = False, spacing: str = "uniform", clip_x0: bool = True,
                 callback: Callable[[int, Tensor], None] | None = None, known: Tensor | None = None,
                 frame_mask: Tensor | None = None, method: str = "trained", guidance_weight: float = 2.0,
                 x_T: Tensor | None = None, stride: int = 1, start: int = 0, stop: int | None = None) -> Tensor:
    """Generate (B, C, T, H, W) for tokenized prompts ids (B, L): videos in [-1, 1], or latents.

    shape is (C, T, H, W). The initial noise is drawn on the CPU from `generator`, so a seed gives
    the same video on any device and batch layout. clip_x0: clip x0 estimates to [-1, 1], for pixel
    models (latents have no known range). callback(i, x0) is called after every step.
    known (B, C, T, H, W) and frame_mask (T,): frames the video must contain (in model space), put
    in by `method`; guidance_weight is w_r of reconstruction guidance. Text guidance keeps the frame
    condition in both of its passes: it steers towards the prompt, not away from the frames.
    x_T: the initial noise, if not drawn here (e.g. zero-shot video's translated noise).
    start, stop: run only the steps from grid point `start` (x_T is then a partly denoised video at that
    noise level) to grid point `stop` (DDIM only; returns the partly denoised video there, unclipped).
    stride: the frame stride to make the video at (a stride-conditioned model); both guidance passes
    take it, like the frame condition.
    """
    device = next(model.parameters()).device
    ids = ids.to(device)
    cond = model.encode(ids, stride)
    null = model.encode(model.tokenizer.empty(ids.shape[0]).to(device), stride)
    if known is not None:
        known, frame_mask = known.to(device), frame_mask.to(device)
        if method == "trained":
            frames = frame_condition(known, frame_mask)
            cond, null = (*cond, frames), (*null, frames)
    guided = classifier_free_guidance(model, cond, null, guidance_scale, diffusion.guidance_interval)
    denoiser = make_denoiser(guided, diffusion.prediction, clip_x0=1.0 if clip_x0 else None)
    if known is not None:
        denoiser = (reconstruction_guidance(denoiser, known, frame_mask, guidance_weight) if method == "guidance"
                    else replacement(denoiser, known, frame_mask))
    x_T = (torch.randn((ids.shape[0], *shape), generator=generator) if x_T is None else x_T).to(device)
    log_snrs = sampling_grid(SCHEDULES[diffusion.schedule], steps, spacing).to(device)
    if not 0 <= start < (steps if stop is None else stop) <= steps:
        raise ValueError(f"cannot sample from grid point {start} to {stop} of {steps} steps")
    kwargs = {"eta": eta} if sampler == "ddim" else {}
    if stop is not None:
        if sampler != "ddim":
            raise ValueError("a partial run (stop) needs the DDIM sampler")
        log_snrs, kwargs["partial"] = log_snrs[:stop + 1], stop < steps
    x = SAMPLERS[sampler](denoiser, x_T, log_snrs[start:], generator=generator, callback=callback, progress=progress,
                          **kwargs)
    if stop is not None and stop < steps:
        return x
    if known is not None:   # exactly the given frames (stochastic samplers end within noise of them)
        x = torch.where(frame_mask.view(1, 1, -1, 1, 1), known.to(x.dtype), x)
    return x.clamp(-1, 1) if clip_x0 else x
