"""What a pipeline returns: the videos as uint8 frames, and their prompts."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import DISPLAY_SCALE
from ..data.io import save_video, upscale
from .checks import save_options


@dataclass
class VideoPipelineOutput:
    frames: np.ndarray   # (B, T, H, W, 3) uint8
    prompts: list[str]

    def save(self, path: str | Path, index: int = 0, fps: int = 8, scale: int = DISPLAY_SCALE,
             overwrite: bool = False) -> Path:
        """Write video `index` as .mp4, .gif or a .png contact sheet, enlarged `scale` times."""
        save_options(self.frames, index, fps, scale)
        return save_video(upscale(self.frames[index], scale), path, fps=fps, overwrite=overwrite)
