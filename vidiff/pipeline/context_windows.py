"""Context windows: a video longer than the model's native length in one pass.

At every step the network runs on overlapping windows of the native length along the (latent) frame
axis, and each frame's prediction is the weighted mean of the windows that hold it, the weights
ramping down towards a window's inner edges (ComfyUI's context windows for Wan; AnimateDiff's
sliding context). Every window is denoised at the same noise level, so the overlaps agree more with
every step, and the whole video is one sample rather than a chain of continuations. Pure index
arithmetic first, tested on its own; then the wrapper around a raw network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..errors import VidiffError


@dataclass
class ContextWindows:
    """The window option group: `length` frames of the model's space per window (None: the model's
    native length), `overlap` frames shared by neighbouring windows (None: a quarter of the length)."""
    length: int | None = None
    overlap: int | None = None


def window_starts(frames: int, length: int, overlap: int) -> list[int]:
    """First frame of each window: stride length - overlap, the last one flush with the end."""
    if not 0 <= overlap < length:
        raise VidiffError(f"the context windows' overlap must be 0 to {length - 1} frames, got {overlap}")
    if frames <= length:
        return [0]
    starts = list(range(0, frames - length, length - overlap))
    return starts + [frames - length]


def window_weights(length: int, overlap: int, first: bool, last: bool) -> Tensor:
    """(length,) blend weights: a linear ramp over the `overlap` frames at each inner edge (1 / (overlap
    + 1) ... 1), flat 1 at the video's own ends."""
    ramp = torch.arange(1, length + 1, dtype=torch.float64) / (overlap + 1)
    w = torch.ones(length, dtype=torch.float64)
    if not first:
        w = torch.minimum(w, ramp)
    if not last:
        w = torch.minimum(w, ramp.flip(0))
    return w


def windowed(net: Callable[..., Tensor], length: int, overlap: int) -> Callable[..., Tensor]:
    """net(x, log_snr, *cond) run window by window over x's frame axis (dim 2) and blended. A cond
    tensor with x's frame axis (a masked-frame model's frame condition) is cut like x; the rest (text
    states, masks) go to every window whole."""
    def run(x: Tensor, log_snr: Tensor, *cond: Tensor) -> Tensor:
        frames = x.shape[2]
        if frames <= length:
            return net(x, log_snr, *cond)
        starts = window_starts(frames, length, overlap)
        out = total = None
        for i, s in enumerate(starts):
            part = [c[:, :, s:s + length] if torch.is_tensor(c) and c.ndim == x.ndim and c.shape[2] == frames else c
                    for c in cond]
            y = net(x[:, :, s:s + length], log_snr, *part)
            w = window_weights(length, overlap, i == 0, i == len(starts) - 1).to(y.device, y.dtype).view(1, 1, -1, 1, 1)
            if out is None:
                out = torch.zeros(*y.shape[:2], frames, *y.shape[3:], device=y.device, dtype=y.dtype)
                total = torch.zeros(frames, device=y.device, dtype=y.dtype)
            out[:, :, s:s + length] += w * y
            total[s:s + length] += w.flatten()
        return out / total.view(1, 1, -1, 1, 1)
    return run
