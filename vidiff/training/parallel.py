"""Wrapping a model for data-parallel training: DDP replicas or FSDP2 shards (process groups: vidiff/distributed.py)."""
from __future__ import annotations

from torch import nn

from ..distributed import Dist
from ..models import BLOCK_TYPES

STRATEGIES = ("ddp", "fsdp", "sequence")   # sequence: DDP over processes that share each clip (sequence_parallel.py)


def wrap(model: nn.Module, strategy: str, d: Dist) -> nn.Module:
    """The module to call forward on. DDP keeps a full replica per rank and averages gradients;
    FSDP2 (fully_shard) shards parameters, gradients and optimizer state across ranks, per block,
    for models that do not fit on one device. `model` itself is sharded in place by FSDP."""
    if not d.enabled:
        return model
    if strategy in ("ddp", "sequence"):
        return nn.parallel.DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    from torch.distributed.fsdp import fully_shard
    for module in shard_units(model):     # shard per backbone block and the text encoder, then the rest at the root
        fully_shard(module)
    fully_shard(model)
    return model


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The blocks FSDP shards one by one: vidiff's own backbones' block types, or the blocks a
    pretrained model's backbone names (`shard_blocks()`: every transformer block of each expert)."""
    named = [m for m in model.modules() if hasattr(m, "shard_blocks")]
    if named:
        return [block for m in named for block in m.shard_blocks()]
    return [m for m in model.modules() if isinstance(m, BLOCK_TYPES)]
