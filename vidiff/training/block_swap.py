"""Block swap (musubi-tuner's --blocks_to_swap, diffusion-pipe's blocks_to_swap): the frozen weights of the
last N transformer blocks live on the host, and each comes to the device only while its block runs,
so a model larger than the device trains a LoRA.

Only frozen tensors move (`p.data` is replaced, so the Parameter objects the optimizer holds stay
put); trainable ones (the adapters) stay on the device, where their gradients are made. Under
activation checkpointing a block's forward runs again in backward and brings its weights back for
that (and, as PyTorch's checkpoint stops a recomputation early, the next block to come sends it back);
the recomputed graph keeps its own device copy until the block's backward is done. Without
checkpointing, autograd keeps every block's weights until backward, so block swap needs it to save
memory (it is still correct without).
"""
from __future__ import annotations

import torch
from torch import nn


def _frozen(block: nn.Module):
    """(module, kind, name, tensor) of a block's frozen parameters and its buffers."""
    for module in block.modules():
        for name, p in module._parameters.items():
            if p is not None and not p.requires_grad:
                yield module, "parameter", name, p
        for name, b in module._buffers.items():
            if b is not None:
                yield module, "buffer", name, b


def _move(block: nn.Module, device: torch.device) -> None:
    for module, kind, name, t in _frozen(block):
        if kind == "parameter":
            t.data = t.data.to(device, non_blocking=True)
        else:
            module._buffers[name] = t.to(device, non_blocking=True)


class BlockSwap:
    """Keep the frozen weights of the last `swap` of `blocks` on the host; bring each to `device` for its
    forward and send it back after. `on_device` and `peak` count the swapped blocks on the device."""

    def __init__(self, blocks: list[nn.Module], swap: int, device: torch.device, host: str = "cpu"):
        self.device, self.host = torch.device(device), torch.device(host)
        self.blocks = list(blocks)[len(blocks) - swap:] if swap else []
        self.on_device: set[int] = set()
        self.peak = self.moves = 0
        for block in self.blocks:
            _move(block, self.host)
            block.register_forward_pre_hook(self._bring)
            block.register_forward_hook(self._send)

    def _bring(self, block: nn.Module, args) -> None:
        # blocks run one after another: any other still here is done (a checkpointed recomputation stops
        # early, before its block's forward hook, so that hook cannot be the only way out)
        for other in self.blocks:
            if id(other) in self.on_device and other is not block:
                self._send(other, None, None)
        _move(block, self.device)
        self.on_device.add(id(block))
        self.peak = max(self.peak, len(self.on_device))
        self.moves += 1

    def _send(self, block: nn.Module, args, out) -> None:
        _move(block, self.host)
        self.on_device.discard(id(block))
        self.moves += 1


def place(model: nn.Module, blocks: list[nn.Module], swap: int, device: torch.device,
          host: nn.Module | None = None) -> BlockSwap:
    """Move `model` to `device` except the frozen weights of the last `swap` blocks, which never land
    there whole (the model may not fit), and `host` (a submodule that never runs: an expert not
    trained), and return the swap that streams them."""
    swapped = {id(t) for block in (list(blocks)[len(blocks) - swap:] if swap else []) for *_, t in _frozen(block)}
    swapped |= {id(t) for t in [*host.parameters(), *host.buffers()]} if host is not None else set()
    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None and id(p) not in swapped:
                p.data = p.data.to(device)
                if p.grad is not None:
                    p.grad = p.grad.to(device)
        for name, b in module._buffers.items():
            if b is not None and id(b) not in swapped:
                module._buffers[name] = b.to(device)
    return BlockSwap(blocks, swap, device)
