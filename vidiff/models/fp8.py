"""fp8 base weights (musubi-tuner's --fp8_base, diffusion-pipe's and ai-toolkit's float8 transformer): a
frozen linear layer keeps its weight in float8 (e4m3) with one float32 scale per output row, and
upcasts it to the input's dtype inside its forward, so a LoRA run holds the base at 1 byte per weight.

Weight-only: activations, the adapters and their gradients keep their precision. The layer stays an
nn.Linear (its class is swapped for a subclass), so LoRA hooks, module names, block swap and the EMA's
shared frozen parameters work unchanged. torchao's Float8WeightOnlyConfig does the same with a tensor
subclass; ours is a few lines that need no extension library and move as plain parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max       # 448


class Float8Linear(nn.Linear):
    weight_scale: nn.Parameter

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight.to(x.dtype) * self.weight_scale.to(x.dtype)
        return F.linear(x, weight, None if self.bias is None else self.bias.to(x.dtype))


def to_fp8(linear: nn.Linear) -> nn.Linear:
    """`linear` in place as a Float8Linear: the weight rounded to float8 with a per-row scale."""
    w = linear.weight.detach().float()
    scale = w.abs().amax(1, keepdim=True).clamp_min(1e-12) / FP8_MAX
    linear.weight = nn.Parameter((w / scale).to(FP8), requires_grad=False)
    linear.weight_scale = nn.Parameter(scale, requires_grad=False)
    linear.__class__ = Float8Linear
    return linear


def store_fp8(modules: list[nn.Module]) -> int:
    """Every frozen nn.Linear inside `modules` (transformer blocks; an adapter's own trainable layers
    stay as they are) stored in fp8; returns how many weights it holds now."""
    count = 0
    for module in modules:
        for layer in module.modules():
            if type(layer) is nn.Linear and not layer.weight.requires_grad:
                count += to_fp8(layer).weight.numel()
    return count
