"""AdamW for a loop with no host sync: one fused kernel per step, told by a device flag to skip a step."""
from __future__ import annotations

import torch
from torch import Tensor


def fused_adamw(params, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=True)


def keep_fused(optimizer: torch.optim.Optimizer) -> None:
    """After load_state_dict: a loaded state carries the saving run's kernel choice (older runs: foreach)."""
    for group in optimizer.param_groups:
        group.update(fused=True, foreach=None)


def skip_unless(optimizer: torch.optim.Optimizer, finite: Tensor) -> None:
    """optimizer.step(), made a no-op by the fused kernel where `finite` (0-dim bool) is False: the
    found_inf input that GradScaler uses, so no host sync decides whether to step."""
    optimizer.found_inf = (~finite).float()
    try:
        optimizer.step()
    finally:
        del optimizer.found_inf
