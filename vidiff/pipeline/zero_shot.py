"""Zero-shot video from an image model (Khachatryan et al. 2023, "Text2Video-Zero"): frame 0 is
denoised alone for the first steps, until its layout exists; that partly denoised latent, translated by
k x the commanded motion, starts frame k, noised back a little (with noise that moves the same way);
then all frames are denoised together, every frame's spatial self-attention reading the keys and values
of frame 0 (cross-frame attention), which keeps the object's look."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch
from torch import Tensor

from ..diffusion.schedules import alpha_sigma
from ..errors import VidiffError

# Text2Video-Zero samples 50 DDIM steps, moves frame 0's latent after step 6 (t0 = 881 of 1000) and
# noises it back to step 3 (t1 = 941): late enough that the layout exists, early enough that the other
# frames can still repair the edges the translation exposes. The same fractions of our grid.
LAYOUT_FRACTION, RESTART_FRACTION = 0.12, 0.06


def motion_steps(steps: int) -> tuple[int, int]:
    """(t1, t0): the grid points where the frames restart and where frame 0's latent is moved."""
    t0 = max(1, round(LAYOUT_FRACTION * steps))
    return min(t0 - 1, round(RESTART_FRACTION * steps)), t0


def translate(first: Tensor, frames: int, motion: tuple[float, float], renormalise: bool = False) -> Tensor:
    """(B, C, 1, H, W) -> (B, C, frames, H, W) whose frame k is `first` shifted by k * motion (dx, dy)
    pixels, circularly; sub-pixel shifts by a Fourier phase ramp. renormalise: rescale each shifted
    frame to unit variance (white noise loses some to the interpolation)."""
    h, w = first.shape[-2:]
    ky = torch.fft.fftfreq(h, device=first.device)[:, None]
    kx = torch.fft.fftfreq(w, device=first.device)[None, :]
    spectrum = torch.fft.fft2(first)
    out = []
    for k in range(frames):
        dx, dy = k * motion[0], k * motion[1]
        if float(dx).is_integer() and float(dy).is_integer():
            out.append(torch.roll(first, shifts=(int(dy), int(dx)), dims=(-2, -1)))
            continue
        shifted = torch.fft.ifft2(spectrum * torch.exp(-2j * torch.pi * (kx * dx + ky * dy))).real.to(first.dtype)
        out.append(shifted / shifted.std(dim=(-2, -1), keepdim=True) if renormalise else shifted)
    return torch.cat(out, dim=2)


def translated_noise(batch: int, shape: tuple[int, int, int, int], motion: tuple[float, float],
                     generator: torch.Generator | None = None) -> Tensor:
    """(batch, C, T, H, W) standard normal noise whose frame k is frame 0 shifted by k * motion (dx, dy)
    pixels of the model's input."""
    c, t, h, w = shape
    return translate(torch.randn((batch, c, 1, h, w), generator=generator), t, motion, renormalise=True)


def moving_start(sample: Callable[..., Tensor], batch: int, shape: tuple[int, int, int, int], grid: Tensor,
                 motion: tuple[float, float], generator: torch.Generator | None = None) -> tuple[Tensor, int]:
    """(x, t1): every frame at grid point t1, built from frame 0 denoised alone to t0 and moved.

    sample(x_T=, shape=, stop=) runs the model's DDIM steps from pure noise to grid point `stop`; grid
    is the sampling grid (log-SNRs) both stages use."""
    c, t, h, w = shape
    t1, t0 = motion_steps(len(grid) - 1)
    first = sample(x_T=torch.randn((batch, c, 1, h, w), generator=generator), shape=(c, 1, h, w), stop=t0)
    moved = translate(first.cpu(), t, motion)
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
