"""Zero-shot video from an image model (Khachatryan et al. 2023, "Text2Video-Zero"): every frame
starts from the same noise, translated by the commanded motion, and every frame's spatial
self-attention reads the keys and values of frame 0 (cross-frame attention), which keeps the object's
look. Simplification: the paper translates a partly denoised latent (after DDIM steps from the noise);
here the initial noise itself is translated, which needs no extra passes."""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor

from ..errors import VidiffError


def translated_noise(batch: int, shape: tuple[int, int, int, int], motion: tuple[float, float],
                     generator: torch.Generator | None = None) -> Tensor:
    """(batch, C, T, H, W) standard normal noise whose frame k is frame 0 shifted by k * motion
    (dx, dy) pixels of the model's input (circularly; sub-pixel shifts by a Fourier phase ramp,
    renormalised to unit variance)."""
    c, t, h, w = shape
    first = torch.randn((batch, c, 1, h, w), generator=generator)
    ky = torch.fft.fftfreq(h)[:, None]
    kx = torch.fft.fftfreq(w)[None, :]
    spectrum = torch.fft.fft2(first)
    frames = []
    for k in range(t):
        dx, dy = k * motion[0], k * motion[1]
        if float(dx).is_integer() and float(dy).is_integer():
            frames.append(torch.roll(first, shifts=(int(dy), int(dx)), dims=(-2, -1)))
            continue
        ramp = torch.exp(-2j * torch.pi * (kx * dx + ky * dy))
        shifted = torch.fft.ifft2(spectrum * ramp).real
        frames.append(shifted / shifted.std(dim=(-2, -1), keepdim=True))
    return torch.cat(frames, dim=2)


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
