"""Zero-shot video from an image model (Khachatryan et al. 2023, "Text2Video-Zero"): frame 0 is
denoised alone for the first steps, until its layout exists; that partly denoised latent, moved by
k x the commanded motion, starts frame k, noised back a little (with noise that moves the same way);
then all frames are denoised together, every frame's spatial self-attention reading the keys and values
of frame 0 (cross-frame attention, which keeps the object's look) and the temporal layers seeing each
frame alone, as the image model did in training."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..devices import randn
from ..diffusion.schedules import alpha_sigma
from ..errors import VidiffError
from .sampling import GridSpan

# Text2Video-Zero samples 50 DDIM steps, moves frame 0's latent after step 6 (t0 = 881 of 1000) and
# noises it back to step 3 (t1 = 941): late enough that the layout exists, early enough that the other
# frames can repair what the move exposes. On our 25-step cosine grid those fractions (12 %, 6 %) leave
# the layout loose: objects re-form where frame 0 had them (measured on 8 held-out captions of a
# 20-minute image model: 0.47 px a frame of the commanded 1.5); at 32 % and 20 % they follow (0.64,
# error 0.96 px) with little loss of fidelity (0.85 vs 0.92); later still, fidelity drops (0.75).
LAYOUT_FRACTION, RESTART_FRACTION = 0.32, 0.2


@dataclass
class ZeroShot:
    """Zero-shot video (VideoPipeline(..., zero_shot=ZeroShot((dx, dy)))): frame 0 moves by `motion`
    (dx, dy) pixels a frame."""
    motion: tuple[float, float] = (1.0, 0.0)


def motion_steps(steps: int) -> tuple[int, int]:
    """(t1, t0): the grid points where the frames restart and where frame 0's latent is moved."""
    t0 = max(1, round(LAYOUT_FRACTION * steps))
    return min(t0 - 1, round(RESTART_FRACTION * steps)), t0


def slide(first: Tensor, frames: int, motion: tuple[float, float]) -> Tensor:
    """(B, C, 1, H, W) -> (B, C, frames, H, W) whose frame k is `first` moved by k * motion (dx, dy)
    pixels, bilinearly, the border values filling what enters the frame: an object moved off the edge
    leaves the picture instead of coming back in on the other side."""
    b, c, _, h, w = first.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=first.dtype), torch.arange(w, dtype=first.dtype), indexing="ij")
    grids = []
    for k in range(frames):   # frame k at (x, y) shows frame 0 at (x - k dx, y - k dy), in [-1, 1] coordinates
        sx, sy = xs - k * motion[0], ys - k * motion[1]
        grids.append(torch.stack([(2 * sx + 1) / w - 1, (2 * sy + 1) / h - 1], dim=-1))
    grid = torch.stack(grids).to(first.device)                                         # (frames, H, W, 2)
    src = first[:, :, 0].repeat_interleave(frames, 0)                                  # (B*frames, C, H, W)
    out = torch.nn.functional.grid_sample(src, grid.repeat(b, 1, 1, 1), mode="bilinear", padding_mode="border",
                                          align_corners=False)
    return out.unflatten(0, (b, frames)).transpose(1, 2)


def translated_noise(batch: int, shape: tuple[int, int, int, int], motion: tuple[float, float],
                     generator: torch.Generator | None = None) -> Tensor:
    """(batch, C, T, H, W) standard normal noise whose frame k is frame 0 shifted by k * motion (dx, dy)
    pixels of the model's input: circularly (noise has no edges to lose), sub-pixel shifts by a Fourier
    phase ramp, each frame rescaled to unit variance (the interpolation loses some)."""
    c, t, h, w = shape
    first = randn((batch, c, 1, h, w), generator, "cpu")       # the Fourier shifts below run on the CPU
    ky, kx = torch.fft.fftfreq(h)[:, None], torch.fft.fftfreq(w)[None, :]
    spectrum = torch.fft.fft2(first)
    frames = []
    for k in range(t):
        dx, dy = k * motion[0], k * motion[1]
        if float(dx).is_integer() and float(dy).is_integer():
            frames.append(torch.roll(first, shifts=(int(dy), int(dx)), dims=(-2, -1)))
            continue
        shifted = torch.fft.ifft2(spectrum * torch.exp(-2j * torch.pi * (kx * dx + ky * dy))).real
        frames.append(shifted / shifted.std(dim=(-2, -1), keepdim=True))
    return torch.cat(frames, dim=2)


def moving_start(sample: Callable[..., Tensor], batch: int, shape: tuple[int, int, int, int], grid: Tensor,
                 motion: tuple[float, float], generator: torch.Generator | None = None) -> tuple[Tensor, int]:
    """(x, t1): every frame at grid point t1, built from frame 0 denoised alone to t0 and moved.

    sample(shape=, span=) runs the model's DDIM steps from pure noise to grid point `stop`; grid
    is the sampling grid (log-SNRs) both stages use."""
    c, t, h, w = shape
    t1, t0 = motion_steps(len(grid) - 1)
    first = sample(shape=(c, 1, h, w), span=GridSpan(randn((batch, c, 1, h, w), generator, "cpu"), stop=t0))
    moved = slide(first.cpu(), t, motion)
    (a0, s0), (a1, s1) = alpha_sigma(grid[t0].cpu()), alpha_sigma(grid[t1].cpu())
    keep = a1 / a0                      # DDPM's forward process from t0 back to t1 (t1 noisier)
    fresh = (s1 ** 2 - keep ** 2 * s0 ** 2).clamp(min=0).sqrt()
    return (keep * moved + fresh * translated_noise(batch, shape, motion, generator)).float(), t1


@contextmanager
def cross_frame_attention(model):
    """Cross-frame attention on while inside; a clear error for a model without spatial attention."""
    backbone = getattr(model, "backbone", model)
    if not hasattr(backbone, "set_cross_frame"):
        raise VidiffError(f"zero-shot video needs a U-Net with spatial attention; this model is a "
                          f"{type(backbone).__name__}")
    if backbone.set_cross_frame(True) == 0:
        raise VidiffError("zero-shot video needs spatial attention, and this U-Net has none "
                          "(model.unet3d.attention_levels is empty)")
    try:
        yield
    finally:
        backbone.set_cross_frame(False)
