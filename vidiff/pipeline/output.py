"""What a pipeline returns: the videos, in the form `output_type` asks for, and their prompts."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from ..config import DISPLAY_SCALE
from ..data.io import save_video, upscale
from ..errors import VidiffError
from .checks import save_options

# np: float32 in [0, 1] (diffusers' default); uint8; pil: a list of PIL images per video; latent: the
# model-space tensor, not decoded
OUTPUT_TYPES = ("np", "uint8", "pil", "latent")


@dataclass
class VideoPipelineOutput:
    pixels: np.ndarray | None   # (B, T, H, W, 3) uint8; None for output_type "latent"
    prompts: list[str]
    output_type: str = "np"
    latents: Tensor | None = None
    fps: int = 8                # the model's own frame rate: save()'s default

    @property
    def frames(self):
        """The videos as output_type says: (B, T, H, W, 3) floats in [0, 1] ("np", as diffusers gives
        them to export_to_video), uint8 ("uint8"), lists of PIL images ("pil"), or latents ("latent")."""
        if self.output_type == "latent":
            return self.latents
        if self.output_type == "uint8":
            return self.pixels
        if self.output_type == "pil":
            from PIL import Image
            return [[Image.fromarray(f) for f in video] for video in self.pixels]
        return self.pixels.astype(np.float32) / 255.0

    def save(self, path: str | Path, index: int = 0, fps: int | None = None, scale: int = DISPLAY_SCALE,
             overwrite: bool = False) -> Path:
        """Write video `index` as .mp4, .gif or a .png contact sheet, enlarged `scale` times, at `fps`
        (None: the model's own frame rate)."""
        fps = self.fps if fps is None else fps
        if self.pixels is None:
            raise VidiffError("latents cannot be saved as a video; call with output_type='np' (the default)")
        save_options(self.pixels, index, fps, scale)
        return save_video(upscale(self.pixels[index], scale), path, fps=fps, overwrite=overwrite)
