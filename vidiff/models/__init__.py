"""Backbones and the text-conditioned model that joins a text encoder to a backbone."""
from __future__ import annotations

from torch import Tensor, nn

from ..config import ModelConfig
from .text import TextEncoder, WordTokenizer
from .dit import DiT3D
from .unet3d import UNet3D


def build_unet3d(cfg: ModelConfig) -> nn.Module:
    return UNet3D(cfg.in_channels, cfg.base_channels, cfg.channel_mults, cfg.num_res_blocks,
                  cfg.attention_levels, cfg.head_dim, cfg.groups, cfg.text.dim)


def build_dit(cfg: ModelConfig) -> nn.Module:
    return DiT3D(cfg.in_channels, cfg.width, cfg.depth, cfg.head_dim, tuple(cfg.patch), cfg.attention,
                 cfg.text.dim, cfg.activation_checkpointing)


BACKBONES = {"unet3d": build_unet3d, "dit": build_dit}


class TextToVideoModel(nn.Module):
    """A text encoder and a video backbone trained together.

    encode(ids) runs once per prompt; forward(x, log_snr, context, mask) runs every sampling step.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.tokenizer = WordTokenizer(cfg.text.vocab, cfg.text.max_length)
        self.text_encoder = TextEncoder(len(self.tokenizer), cfg.text.max_length, cfg.text.dim,
                                        cfg.text.layers, cfg.text.heads)
        self.backbone = BACKBONES[cfg.type](cfg)

    def encode(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        return self.text_encoder(ids)

    def forward(self, x: Tensor, log_snr: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                ids: Tensor | None = None) -> Tensor:
        """Pass an encoded prompt (context, mask), or token ids to encode inside this call (training
        does, so data-parallel wrappers see every parameter used in forward)."""
        if ids is not None:
            context, mask = self.encode(ids)
        return self.backbone(x, log_snr, context, mask)
