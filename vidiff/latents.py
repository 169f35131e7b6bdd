"""Where diffusion happens: pixels, or the latents of a video VAE (latent diffusion, Rombach et al. 2022).

A codec maps pixel videos in [-1, 1] to the backbone's space and back; for pixel models it is the
identity. Latents are multiplied by `vae.latent_scale` (1/std measured on training data when a
latent run starts) so the diffusion sees unit-variance data, as its noise schedule assumes.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .config import Config
from .models.vae import VideoVAE


class LatentCodec:
    def __init__(self, vae: VideoVAE | None = None, scale: float = 1.0, tile: int = 32):
        self.vae, self.scale, self.tile = vae, scale, tile

    @classmethod
    def from_checkpoint(cls, cfg: Config, folder: Path, device) -> "LatentCodec":
        """The codec a saved model was trained with (its VAE weights travel in the checkpoint)."""
        if cfg.diffusion.space == "pixel":
            return cls()
        from .training.checkpoint import load_weights
        from .training.vae_trainer import VAE_TYPE, build_vae
        vae = build_vae(cfg)
        load_weights(vae, folder / "vae.safetensors", cfg, model_type=VAE_TYPE)
        return cls(vae.to(device).eval().requires_grad_(False), cfg.vae.latent_scale)

    def shape(self, channels: int, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """The backbone's input shape for a video of this many frames and pixels."""
        return (channels, frames, height, width) if self.vae is None else self.vae.latent_shape(frames, height, width)

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        return video if self.vae is None else self.vae.encode(video)[0] * self.scale

    @torch.no_grad()
    def decode(self, x: Tensor) -> Tensor:
        return x if self.vae is None else self.vae.decode_tiled(x / self.scale, tile=self.tile).clamp(-1, 1)


@torch.no_grad()
def measure_latent_scale(vae: VideoVAE, videos: Tensor) -> float:
    """1 / std of the VAE's latents (posterior means) of some training videos."""
    return float(1.0 / vae.encode(videos)[0].std().clamp(min=1e-6))
