"""Activation offload (musubi-tuner's --gradient_checkpointing_cpu_offload): under activation
checkpointing a block keeps only its inputs for backward (the residual stream, fp32: 27 GB for Wan
14B at 81x480x832, more than its weights with block swap and fp8); this keeps those on the host and
brings each back for its block's recomputation.

It is a checkpoint function for diffusers' `enable_gradient_checkpointing(fn)`: PyTorch's reentrant
checkpoint saves a block's inputs through autograd's saved-tensor hooks, which these hooks move to
the host (pinned on a GPU, so the copies overlap compute). The reentrant form gives parameters inside
the block gradients only if an input requires grad, so `require_grad_input` makes the first block's
input do so (a LoRA run's inputs come from frozen layers).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

STATS = {"tensors": 0, "bytes": 0}      # what went to the host (tests read it)


def _pack(t: Tensor):
    if t.device.type == "cpu":
        host = t.clone()               # the host already: kept as is (a copy, as the device's would be)
    else:
        host = torch.empty(t.shape, dtype=t.dtype, layout=t.layout, pin_memory=True)
        host.copy_(t, non_blocking=True)
    STATS["tensors"] += 1
    STATS["bytes"] += t.numel() * t.element_size()
    return t.device, host


def _unpack(packed) -> Tensor:
    device, host = packed
    return host.to(device, non_blocking=True)


def offloaded_checkpoint(module: nn.Module, *args):
    """diffusers' gradient-checkpointing function, with the block's saved inputs on the host."""
    with torch.autograd.graph.saved_tensors_hooks(_pack, _unpack):
        return checkpoint(module.__call__, *args, use_reentrant=True)


def require_grad_input(layer: nn.Module) -> None:
    """Make `layer`'s output require grad (the transformer's patch embedding: what the blocks take)."""
    layer.register_forward_hook(lambda module, inputs, output: output.requires_grad_(True))
