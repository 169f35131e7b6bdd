"""The learning-rate schedule: linear warm-up, then constant or cosine decay to 10% of the peak."""
from __future__ import annotations

import math

from ..config import TrainConfig

LR_DECAYS = ("cosine", "constant")


def warmup_steps(cfg: TrainConfig) -> int:
    """train.warmup_steps, but at most a tenth of the run (at least 1 where any is asked): a 12-step run
    with the default 100 would never reach its learning rate."""
    return min(cfg.warmup_steps, max(1, cfg.steps // 10))


def learning_rate(cfg: TrainConfig, step: int) -> float:
    warmup = warmup_steps(cfg)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.lr_decay == "constant":
        return cfg.lr
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))
