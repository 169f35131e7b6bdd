"""Frames a user gives (an image for image-to-video, a video to extend or interpolate) as uint8
(T, H, W, 3) at the frame size: any size is scaled to cover it and centre-cropped, with a notice."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..data.io import IMAGE_INPUTS, from_uint8, read_video, to_uint8
from ..errors import VidiffError

FrameSource = str | Path | np.ndarray | torch.Tensor | Image.Image


def read_image(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise VidiffError(f"image '{path}' not found")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise VidiffError(f"cannot read image '{path}': {e}") from None


def as_frames(source: FrameSource, what: str) -> np.ndarray:
    """(T, H, W, 3) uint8 from a file path (image or video), a PIL image, an (H, W, 3) / (T, H, W, 3)
    uint8 array, or a tensor in [-1, 1] shaped (3, H, W) / (3, T, H, W)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        is_image = path.suffix.lower() in IMAGE_INPUTS
        frames = read_image(path)[None] if is_image else read_video(path)
    elif isinstance(source, Image.Image):
        frames = np.asarray(source.convert("RGB"))[None]
    elif isinstance(source, torch.Tensor):
        x = source.detach().float().cpu()
        x = x[:, None] if x.ndim == 3 else x
        if x.ndim != 4 or x.shape[0] != 3:
            raise VidiffError(f"{what} tensor must be (3, H, W) or (3, T, H, W) in [-1, 1], got {tuple(source.shape)}")
        frames = to_uint8(x)
    else:
        frames = np.asarray(source)
        frames = frames[None] if frames.ndim == 3 else frames
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VidiffError(f"{what} must be RGB uint8 frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    if frames.shape[0] == 0 or min(frames.shape[1:3]) < 1:
        raise VidiffError(f"{what} has no pixels")
    return frames


def fit_frames(frames: np.ndarray, height: int, width: int, what: str, notice: bool = True) -> np.ndarray:
    """Scale to cover height x width (aspect kept) and centre-crop to it; say so when anything changed."""
    t, h, w, _ = frames.shape
    if (h, w) == (height, width):
        return frames
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    top, left = (nh - height) // 2, (nw - width) // 2
    out = np.stack([np.asarray(Image.fromarray(f).resize((nw, nh), Image.Resampling.BOX if scale < 1
                                                         else Image.Resampling.BILINEAR))[top:top + height, left:left + width]
                    for f in frames])
    if notice:
        crop = " (centre crop)" if (nh, nw) != (height, width) else ""
        print(f"note: {what} is {w}x{h}; resized to the model's {width}x{height}{crop}", file=sys.stderr)
    return out


def to_model_range(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (1, 3, T, H, W) in [-1, 1]."""
    return from_uint8(frames)[None]
