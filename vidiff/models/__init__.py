"""Networks, and the registry that builds them from a config: backbones by `model.type`, the VAE.

A backbone is an nn.Module with forward(x (B, C, T, H, W), log_snr (B,), context, mask, frames=None) -> like x;
a frame-conditioned one (model.frame_conditioning) reads frames: known frames and their mask, C + 1 channels.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..config import DiTConfig, LoRAConfig, ModelConfig, UNetConfig, VAEConfig
from ..errors import VidiffError
from .codec import LatentCodec
from .dit import DiT3D, DiTBlock
from .lora import add_recipe_lora
from .text import TextEncoder
from .text_to_video import TextToVideoModel
from .unet3d import UNet3D, VideoBlock
from .vae import VideoVAE


def _unet3d(cfg: UNetConfig, in_channels: int, context_dim: int, frame_channels: int = 0) -> nn.Module:
    return UNet3D(in_channels=in_channels, base_channels=cfg.base_channels, channel_mults=cfg.channel_mults,
                  num_res_blocks=cfg.num_res_blocks, attention_levels=cfg.attention_levels, head_dim=cfg.head_dim,
                  groups=cfg.groups, context_dim=context_dim, frame_channels=frame_channels,
                  activation_checkpointing=cfg.activation_checkpointing)


def _dit(cfg: DiTConfig, in_channels: int, context_dim: int, frame_channels: int = 0) -> nn.Module:
    return DiT3D(in_channels=in_channels, width=cfg.width, depth=cfg.depth, head_dim=cfg.head_dim,
                 patch=tuple(cfg.patch), attention=cfg.attention, context_dim=context_dim,
                 activation_checkpointing=cfg.activation_checkpointing, frame_channels=frame_channels)


BACKBONES: dict[str, Callable[..., nn.Module]] = {"unet3d": _unet3d, "dit": _dit}
# the repeated blocks of each backbone: the units FSDP shards and activation checkpointing wraps
BLOCK_TYPES: tuple[type[nn.Module], ...] = (VideoBlock, DiTBlock, TextEncoder)


def build_model(cfg: ModelConfig, known_words: list[str] | None = None, lora: LoRAConfig | None = None) -> TextToVideoModel:
    """The text-to-video model a config describes; known_words: the words prompts may use
    (Config.trained_words()), default all of model.text.vocab; lora: a LoRA run's train.lora, whose
    adapter is then part of the model (empty until trained or loaded)."""
    if cfg.type not in BACKBONES:           # a hand-edited config.json reaches here without registry.validate
        raise VidiffError(f"unknown model.type '{cfg.type}'; choose one of: {', '.join(BACKBONES)}")
    frame_channels = cfg.in_channels + 1 if cfg.frame_conditioning else 0
    backbone = BACKBONES[cfg.type](getattr(cfg, cfg.type), cfg.in_channels, cfg.text.dim, frame_channels)
    t = cfg.text
    model = TextToVideoModel(backbone, t.vocab, t.max_length, t.dim, t.layers, t.heads, known_words,
                             cfg.frame_conditioning, cfg.stride_conditioning)
    if lora is not None:
        add_recipe_lora(model, lora)
    return model


def build_vae(cfg: VAEConfig) -> VideoVAE:
    return VideoVAE(cfg.in_channels, cfg.channels, tuple(cfg.channel_mults), cfg.latent_channels, cfg.temporal_downsample)


def input_multiples(cfg: ModelConfig) -> tuple[int, int]:
    """(frames, height/width) of the backbone's input must be multiples of these."""
    if cfg.type == "dit":
        return cfg.dit.patch[0], max(cfg.dit.patch[1:])
    return 1, 2 ** (len(cfg.unet3d.channel_mults) - 1)


__all__ = ["BACKBONES", "BLOCK_TYPES", "LatentCodec", "TextToVideoModel", "VideoVAE", "build_model", "build_vae",
           "input_multiples"]
