"""Where diffusion happens: pixels, or the latents of a video VAE (latent diffusion, Rombach et al. 2022).

A codec maps pixel videos in [-1, 1] to the backbone's space and back; for pixel models it is the
identity. Latents are multiplied by `scale` (1/std measured on training data when a latent run
starts) so the diffusion sees unit-variance data, as its noise schedule assumes.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..config import DECODE_TILE, VAEConfig
from ..devices import autocast
from .vae import VideoVAE


class LatentCodec:
    """config: the VAE's architecture, kept to store it beside the VAE's weights."""

    def __init__(self, vae: VideoVAE | None = None, scale: float = 1.0, tile: int = DECODE_TILE,
                 config: VAEConfig | None = None):
        self.vae, self.scale, self.tile, self.config = vae, scale, tile, config

    @property
    def latent(self) -> bool:
        return self.vae is not None

    def shape(self, channels: int, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """The backbone's input shape for a video of this many frames and pixels."""
        return (channels, frames, height, width) if self.vae is None else self.vae.latent_shape(frames, height, width)

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """Pixels -> float32 latents (a bf16 or fp16 VAE runs under autocast)."""
        if self.vae is None:
            return video
        with autocast(next(self.vae.parameters()).dtype, video.device):
            return self.vae.encode(video)[0].float() * self.scale

    @torch.no_grad()
    def decode(self, x: Tensor, progress: bool = False) -> Tensor:
        if self.vae is None:
            return x
        with autocast(next(self.vae.parameters()).dtype, x.device):
            return self.vae.decode_tiled(x / self.scale, tile=self.tile, progress=progress).float().clamp(-1, 1)


@torch.no_grad()
def measure_latent_scale(vae: VideoVAE, videos: Tensor) -> float:
    """1 / std of the VAE's latents (posterior means) of some training videos."""
    return float(1.0 / vae.encode(videos)[0].std().clamp(min=1e-6))
