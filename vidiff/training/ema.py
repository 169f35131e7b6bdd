"""Exponential moving average of model weights (Polyak averaging), the weights used for sampling."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float, share_frozen: bool = True):
        """share_frozen: the average holds the model's own frozen parameters (which never change: a LoRA
        run's base; 5.3 GB of fp32 for Wan 1.3B) instead of copies. Off where the average is sharded
        apart from the model (FSDP wraps each on its own)."""
        self.decay = decay
        memo = {id(p): p for p in model.parameters() if not p.requires_grad} if share_frozen else {}
        self.model = copy.deepcopy(model, memo).eval().requires_grad_(False)

    def effective_decay(self, step: int) -> float:
        """Warm up the decay, (1 + n) / (10 + n), so early averages are not dominated by the random init."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, keep: torch.Tensor | None = None) -> None:
        """One fused lerp over all weights. keep: a 0-dim bool on the device; False leaves the average
        as it is (a skipped step) without a host sync to find out."""
        local = lambda p: p.to_local() if hasattr(p, "to_local") else p   # FSDP shards: update this rank's part
        # frozen parameters (a LoRA run's base) never change: averaging them is work for nothing
        pairs = [(e, p) for e, p in zip(self.model.parameters(), model.parameters()) if p.requires_grad]
        ema_params = [local(e) for e, _ in pairs]
        params = [local(p.detach()) for _, p in pairs]
        weight = 1.0 - self.effective_decay(step)
        if keep is not None:
            weight = keep.to(ema_params[0].device, ema_params[0].dtype) * weight
        torch._foreach_lerp_(ema_params, params, weight)
