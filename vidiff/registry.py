"""The names a config may choose, read from the registries that define them (never re-listed), and
the checks on a model, diffusion and data config that need those registries.

config.py checks structure, types and ranges; this adds: is `diffusion.schedule` a schedule, does
the backbone fit its input size, and so on. The `train` section's names belong to the training
layer (vidiff/training/options.py).
"""
from __future__ import annotations

from .config import Config
from .data import CROPS, DATASETS
from .diffusion import PREDICTIONS, SAMPLERS, SCHEDULES, SPACINGS, TIME_SAMPLINGS, WEIGHTINGS
from .errors import VidiffError
from .models import BACKBONES, input_multiples
from .models.dit import ATTENTION_MODES
from .models.vae import TEMPORAL_DOWNSAMPLES

CHOICES = {
    "model.type": BACKBONES, "model.dit.attention": ATTENTION_MODES,
    "diffusion.schedule": SCHEDULES, "diffusion.prediction": PREDICTIONS, "diffusion.loss_weighting": WEIGHTINGS,
    "diffusion.time_sampling": TIME_SAMPLINGS, "diffusion.sampler": SAMPLERS, "diffusion.spacing": SPACINGS,
    "data.type": DATASETS, "data.folder.crop": CROPS, "vae.temporal_downsample": TEMPORAL_DOWNSAMPLES,
}


def _value(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def check_choices(cfg, choices: dict) -> None:
    for key, names in choices.items():
        value = _value(cfg, key)
        if value not in names:
            raise VidiffError(f"config key '{key}' is '{value}'; choose one of: {', '.join(map(str, names))}")


def check_backbone(cfg: Config) -> None:
    m = cfg.model
    if m.type == "dit":
        d = m.dit
        if d.width % d.head_dim or d.head_dim % 16:
            raise VidiffError("model.dit needs head_dim a multiple of 16 that divides width "
                              f"(got width {d.width}, head_dim {d.head_dim})")
    else:
        u = m.unet3d
        if any(not 0 <= lvl < len(u.channel_mults) for lvl in u.attention_levels):
            raise VidiffError(f"model.unet3d.attention_levels {u.attention_levels} must index the "
                              f"{len(u.channel_mults)} levels")
        if any(u.base_channels * k % u.groups for k in u.channel_mults) or u.base_channels * min(u.channel_mults) % u.head_dim:
            raise VidiffError("model.unet3d channel widths must be divisible by groups and head_dim")


def check_input_size(cfg: Config, frames: int, size: int, where: str = "") -> None:
    """The backbone's input (frames, size), e.g. after a VAE's compression, fits its multiples."""
    frames_multiple, size_multiple = input_multiples(cfg.model)
    if size % size_multiple or frames % frames_multiple:
        raise VidiffError(f"data.size {cfg.data.size} must give a multiple of {size_multiple} and data.frames "
                          f"{cfg.data.frames} a multiple of {frames_multiple} at the {cfg.model.type}'s input{where}")


def validate(cfg: Config) -> Config:
    """Every check of a config short of loading data or a VAE: what config.py checks, plus names and
    backbone sizes. A latent model's sizes are checked once its VAE is known (the trainer does)."""
    check_choices(cfg, CHOICES)
    if cfg.model.pretrained:          # another library's model: its directory defines it (checked when loaded)
        return cfg
    check_backbone(cfg)
    if not cfg.train.vae:
        check_input_size(cfg, cfg.data.frames, cfg.data.size)
    return cfg
