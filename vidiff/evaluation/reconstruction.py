"""Reconstruction quality: PSNR and SSIM of videos as uint8 frames (T, H, W, 3)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DECODE_TILE
from ..data.io import from_uint8, to_uint8
from ..errors import VidiffError


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over the whole clip (peak 255)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, window: int = 11, sigma: float = 1.5) -> float:
    """Mean structural similarity (Wang et al. 2004) per frame and channel, Gaussian window, K1 0.01, K2 0.03."""
    x = torch.from_numpy(a).double().permute(0, 3, 1, 2)          # (T, 3, H, W)
    y = torch.from_numpy(b).double().permute(0, 3, 1, 2)
    g = torch.exp(-((torch.arange(window, dtype=torch.float64) - window // 2) ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None]).expand(3, 1, window, window)
    blur = lambda z: F.conv2d(z, kernel, groups=3)                 # valid region only, as the reference
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


@torch.no_grad()
def reconstruct(frames: np.ndarray, vae, tile: int = DECODE_TILE) -> tuple[np.ndarray, np.ndarray]:
    """Encode and decode (T, H, W, 3) uint8 frames with a VideoVAE. Returns (input, reconstruction),
    the input cut to 1 + k * time_factor frames and sizes the VAE's compression divides."""
    f, tf = vae.spatial_factor, vae.time_factor
    t = 1 + (frames.shape[0] - 1) // tf * tf           # the longest prefix latent_frames accepts
    h, w = frames.shape[1] // f * f, frames.shape[2] // f * f
    if h == 0 or w == 0:
        raise VidiffError(f"the video ({frames.shape[1]}x{frames.shape[2]}) is smaller than the VAE's {f}x{f} compression")
    frames = frames[:t, :h, :w]
    device = next(vae.parameters()).device
    x = from_uint8(frames)[None].to(device)
    recon = vae.decode_tiled(vae.encode(x)[0], tile=tile).clamp(-1, 1)
    return frames, to_uint8(recon[0])
