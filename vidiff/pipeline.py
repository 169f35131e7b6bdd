"""VideoPipeline: the one entry point for inference, shaped like the diffusers pipelines users know.

    pipe = VideoPipeline.from_pretrained()            # the embedded default model
    video = pipe("a red circle bouncing", num_frames=16, num_inference_steps=25,
                 guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    video.save("out.mp4")
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import Config
from .data.io import save_video, to_uint8, upscale
from .diffusion import SAMPLERS
from .errors import VidiffError
from .latents import LatentCodec
from .models import TextToVideoModel
from .sampling import sample_video
from .training.checkpoint import load_weights, read_config, resolve_checkpoint

DEFAULT_MODEL = Path(__file__).parent / "assets" / "default"


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
        folder = resolve_checkpoint(DEFAULT_MODEL if path is None else path)
        config = read_config(folder)
        model = TextToVideoModel(config.model)
        weights = folder / "ema.safetensors"
        load_weights(model, weights if weights.is_file() else folder / "model.safetensors", config)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model.to(device), config, LatentCodec.from_checkpoint(config, folder, device))

    def __call__(self, prompt: str | list[str], num_frames: int | None = None, height: int | None = None,
                 width: int | None = None, num_inference_steps: int = 25, guidance_scale: float = 3.0,
                 generator: torch.Generator | None = None, sampler: str = "ddim", eta: float = 0.0,
                 progress: bool = True) -> VideoPipelineOutput:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts or any(not p.strip() for p in prompts):
            raise VidiffError("the prompt is empty; describe the video, e.g. 'a red circle bouncing'")
        data = self.config.data
        frames, height, width = (data.frames if num_frames is None else num_frames,
                                 data.size if height is None else height, data.size if width is None else width)
        tf, factor = self.config.model.size_multiples()
        if self.codec.vae is not None:      # sizes in pixels: the VAE's compression times the backbone's
            vae = self.config.vae
            factor *= vae.spatial_factor()
            if frames < 1 or (frames - 1) % vae.temporal_downsample or (1 + (frames - 1) // vae.temporal_downsample) % tf:
                raise VidiffError(f"cannot make {frames} frames with this latent model: use 1 + "
                                  f"{vae.temporal_downsample * tf}k frames (it was trained at {data.frames})")
        elif frames < 1 or frames % tf:
            raise VidiffError(f"cannot make {frames} frames: this model needs frames >= 1 and a multiple of {tf} "
                              f"(it was trained at {data.frames})")
        if height < factor or width < factor or height % factor or width % factor:
            raise VidiffError(f"cannot make {frames} frames of {height}x{width}: this model needs frames >= 1 and "
                              f"height, width multiples of {factor} (it was trained at {data.size})")
        if not math.isfinite(guidance_scale):
            raise VidiffError(f"guidance_scale must be a finite number, got {guidance_scale}")
        if num_inference_steps < 1:
            raise VidiffError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
        if sampler not in SAMPLERS:
            raise VidiffError(f"unknown sampler '{sampler}'; choose one of: {', '.join(SAMPLERS)}")
        ids = self.model.tokenizer.encode(prompts)
        shape = self.codec.shape(self.config.model.in_channels, frames, height, width)
        videos = self.codec.decode(sample_video(self.model, self.config.diffusion, ids, shape, num_inference_steps,
                                                guidance_scale, sampler, eta, generator, progress))
        return VideoPipelineOutput(to_uint8(videos), prompts)
