"""The learning-rate schedule: linear warm-up, then constant or cosine decay to 10% of the peak."""
from __future__ import annotations

import math

from ..config import TrainConfig

LR_DECAYS = ("cosine", "constant")


def learning_rate(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_decay == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))
