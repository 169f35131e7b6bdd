"""Text-to-video sampling: joins a trained model to the diffusion math (samplers + guidance)."""
from __future__ import annotations

import torch
from torch import Tensor

from .config import DiffusionConfig
from .diffusion import classifier_free_guidance, get_sampler, get_schedule, make_denoiser
from .models import TextToVideoModel


@torch.no_grad()
def sample_video(model: TextToVideoModel, diffusion: DiffusionConfig, ids: Tensor,
                 shape: tuple[int, int, int, int], steps: int = 25, guidance_scale: float = 3.0,
                 sampler: str = "ddim", eta: float = 0.0, generator: torch.Generator | None = None,
                 progress: bool = False) -> Tensor:
    """Generate videos (B, C, T, H, W) in [-1, 1] (or latents, for a latent model) for tokenized prompts ids (B, L).

    shape is (C, T, H, W). The initial noise is drawn on the CPU from `generator` so a seed gives
    the same video on any device and batch layout.
    """
    device = next(model.parameters()).device
    ids = ids.to(device)
    context, mask = model.encode(ids)
    empty = torch.zeros_like(ids)
    empty[:, 0] = ids[:, 0]                                   # the <bos>-only unconditional prompt
    null_context, null_mask = model.encode(empty)
    guided = classifier_free_guidance(model, (context, mask), (null_context, null_mask), guidance_scale)
    pixels = diffusion.space == "pixel"      # only pixels have a known range to clip x0 estimates to
    denoiser = make_denoiser(guided, diffusion.prediction, clip_x0=1.0 if pixels else None)
    x_T = torch.randn((ids.shape[0], *shape), generator=generator).to(device)
    kwargs = {"eta": eta} if sampler == "ddim" else {}
    x = get_sampler(sampler)(denoiser, x_T, get_schedule(diffusion.schedule), steps,
                                generator=generator, progress=progress, **kwargs)
    return x.clamp(-1, 1) if pixels else x
