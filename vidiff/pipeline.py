"""VideoPipeline: the one entry point for inference, shaped like the diffusers pipelines users know.

    pipe = VideoPipeline.from_pretrained()            # the embedded default model
    video = pipe("a red circle bouncing", num_frames=16, num_inference_steps=25,
                 guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    video.save("out.mp4")

`sample_video` below is the denoising loop itself (model + guidance + sampler), which training also
uses for its sample sheets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .checkpoint import load_codec, load_model
from .config import Config, DiffusionConfig
from .data.io import save_video, to_uint8, upscale
from .diffusion import SAMPLERS, SCHEDULES, SPACINGS, classifier_free_guidance, make_denoiser, sampling_grid
from .errors import VidiffError
from .models import LatentCodec, TextToVideoModel, input_multiples

DEFAULT_MODEL = Path(__file__).parent / "assets" / "default"


@torch.no_grad()
def sample_video(model: TextToVideoModel, diffusion: DiffusionConfig, ids: Tensor,
                 shape: tuple[int, int, int, int], steps: int = 25, guidance_scale: float = 3.0,
                 sampler: str = "ddim", eta: float = 0.0, generator: torch.Generator | None = None,
                 progress: bool = False, spacing: str = "uniform", clip_x0: bool = True,
                 callback: Callable[[int, Tensor], None] | None = None) -> Tensor:
    """Generate (B, C, T, H, W) for tokenized prompts ids (B, L): videos in [-1, 1], or latents.

    shape is (C, T, H, W). The initial noise is drawn on the CPU from `generator`, so a seed gives
    the same video on any device and batch layout. clip_x0: clip x0 estimates to [-1, 1], for pixel
    models (latents have no known range). callback(i, x0) is called after every step.
    """
    device = next(model.parameters()).device
    ids = ids.to(device)
    cond = model.encode(ids)
    null = model.encode(model.tokenizer.empty(ids.shape[0]).to(device))
    guided = classifier_free_guidance(model, cond, null, guidance_scale)
    denoiser = make_denoiser(guided, diffusion.prediction, clip_x0=1.0 if clip_x0 else None)
    x_T = torch.randn((ids.shape[0], *shape), generator=generator).to(device)
    log_snrs = sampling_grid(SCHEDULES[diffusion.schedule], steps, spacing).to(device)
    kwargs = {"eta": eta} if sampler == "ddim" else {}
    x = SAMPLERS[sampler](denoiser, x_T, log_snrs, generator=generator, callback=callback, progress=progress, **kwargs)
    return x.clamp(-1, 1) if clip_x0 else x


@dataclass
class VideoPipelineOutput:
    frames: np.ndarray   # (B, T, H, W, 3) uint8
    prompts: list[str]

    def save(self, path: str | Path, index: int = 0, fps: int = 8, scale: int = 1,
             overwrite: bool = False) -> Path:
        """Write video `index` as .mp4, .gif or a .png contact sheet, enlarged `scale` times."""
        return save_video(upscale(self.frames[index], scale), path, fps=fps, overwrite=overwrite)


class VideoPipeline:
    def __init__(self, model: TextToVideoModel, config: Config, codec: LatentCodec | None = None):
        self.model, self.config, self.codec = model.eval(), config, codec or LatentCodec()

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | torch.device | None = None):
        """Load a checkpoint folder, a training run folder (its latest checkpoint, EMA weights), or
        with no path the model embedded in the package."""
        model, config, folder = load_model(DEFAULT_MODEL if path is None else path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device), config, load_codec(folder, device))

    def check_size(self, frames: int, height: int, width: int) -> None:
        """One-line errors for clip sizes this model cannot make (in pixels, for pixel and latent models)."""
        data = self.config.data
        if frames < 1:
            raise VidiffError(f"cannot make {frames} frames: this model needs --frames >= 1 (it was trained at {data.frames})")
        tf, factor = input_multiples(self.config.model)
        vae = self.codec.vae
        if vae is not None:      # the VAE's compression times the backbone's
            factor *= vae.spatial_factor
            td = vae.time_factor
            if (frames - 1) % td or (1 + (frames - 1) // td) % tf:
                raise VidiffError(f"cannot make {frames} frames with this latent model: use 1 + {td * tf}k frames "
                                  f"(--frames; it was trained at {data.frames})")
        elif frames % tf:
            raise VidiffError(f"cannot make {frames} frames: this model needs --frames >= 1 and a multiple of {tf} "
                              f"(it was trained at {data.frames})")
        if height < factor or width < factor or height % factor or width % factor:
            raise VidiffError(f"cannot make frames of {height}x{width}: this model needs --size a multiple of "
                              f"{factor} (it was trained at {data.size})")

    def __call__(self, prompt: str | list[str], num_frames: int | None = None, height: int | None = None,
                 width: int | None = None, num_inference_steps: int = 25, guidance_scale: float = 3.0,
                 generator: torch.Generator | None = None, sampler: str = "ddim", eta: float = 0.0,
                 spacing: str = "uniform", progress: bool = True,
                 callback: Callable[[int, Tensor], None] | None = None) -> VideoPipelineOutput:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts or any(not p.strip() for p in prompts):
            raise VidiffError("the prompt is empty; describe the video, e.g. 'a red circle bouncing'")
        data = self.config.data
        frames = data.frames if num_frames is None else num_frames
        height = data.size if height is None else height
        width = data.size if width is None else width
        self.check_size(frames, height, width)
        if not math.isfinite(guidance_scale):
            raise VidiffError(f"the guidance scale (--guidance) must be a finite number, got {guidance_scale}")
        if num_inference_steps < 1:
            raise VidiffError(f"the number of sampling steps (--steps) must be at least 1, got {num_inference_steps}")
        for what, name, registry in (("sampler (--sampler)", sampler, SAMPLERS), ("spacing (--spacing)", spacing, SPACINGS)):
            if name not in registry:
                raise VidiffError(f"unknown {what} '{name}'; choose one of: {', '.join(registry)}")
        ids = self.model.tokenizer.encode(prompts)
        shape = self.codec.shape(self.config.model.in_channels, frames, height, width)
        x = sample_video(self.model, self.config.diffusion, ids, shape, num_inference_steps, guidance_scale, sampler,
                         eta, generator, progress, spacing, clip_x0=not self.codec.latent, callback=callback)
        return VideoPipelineOutput(to_uint8(self.codec.decode(x)), prompts)
