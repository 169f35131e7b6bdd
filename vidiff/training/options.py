"""The names the `train` section may choose, read from the training layer's registries."""
from __future__ import annotations

from contextlib import nullcontext

import torch

from ..config import Config
from ..registry import check_choices, validate
from .lr import LR_DECAYS
from .parallel import STRATEGIES

PRECISIONS = ("auto", "fp32", "bf16")   # auto: bf16 autocast on CUDA, fp32 on the CPU (where bf16 was slower)


def validate_training(cfg: Config) -> Config:
    """Every check of a training recipe that needs no data or VAE loaded."""
    validate(cfg)
    check_choices(cfg, {"train.lr_decay": LR_DECAYS, "train.precision": PRECISIONS, "train.parallel": STRATEGIES})
    return cfg


def autocast_for(precision: str, device: torch.device):
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()
