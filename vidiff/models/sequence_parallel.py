"""Sequence parallelism for the DiT: one clip's tokens split across the processes of a group, by frames,
so each holds 1/N of the activations (Open-Sora's sequence parallelism; DeepSpeed-Ulysses' all-to-all).

  factorized attention  spatial attention, cross-attention and the MLP see only a frame's own tokens:
                        local. Temporal attention needs every frame of a position: an all-to-all turns
                        the split over frames into a split over positions, and back.
  full attention        the queries, keys and values go from a split over tokens to a split over heads
                        (all-to-all), attention runs on the whole sequence for H/N heads, and back.

Every process gets the same batch; the output's frames are gathered at the end, so the loss is the
one process's. The collectives are differentiable; their backward passes give each process the
gradient of the sum of the processes' (equal) losses, which DDP's averaging turns back into the
one-process gradient. Works with gloo (CPU) and NCCL.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from einops import rearrange
from torch import Tensor

from ..errors import VidiffError
from .layers import apply_rotary, attention


@dataclass(frozen=True)
class SequenceGroup:
    rank: int
    size: int
    group: object = None       # a torch.distributed process group (None: the default, every process)

    def local(self, frames: int) -> slice:
        """This process's frames of `frames`."""
        n = frames // self.size
        return slice(self.rank * n, (self.rank + 1) * n)


def check_split(group: SequenceGroup, frames: int, positions: int, heads: int, factorized: bool) -> None:
    """One-line errors for clips the group cannot split."""
    if frames % group.size:
        raise VidiffError(f"sequence parallelism over {group.size} processes needs a token frame count they divide; "
                          f"this clip has {frames} (choose --frames / data.frames so that they do)")
    if factorized and positions % group.size:
        raise VidiffError(f"sequence parallelism over {group.size} processes needs tokens per frame they divide, "
                          f"got {positions}")
    if not factorized and heads % group.size:
        raise VidiffError(f"sequence parallelism with full attention over {group.size} processes needs attention "
                          f"heads they divide, got {heads}: run a process count that divides {heads}, or one process")


class _AllToAll(torch.autograd.Function):
    """Split dim `scatter` into N chunks, send chunk i to process i, concatenate what arrives along `gather`."""

    @staticmethod
    def forward(ctx, x: Tensor, scatter: int, gather: int, group: SequenceGroup) -> Tensor:
        ctx.scatter, ctx.gather, ctx.sp = scatter, gather, group
        return _all_to_all(x, scatter, gather, group)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _all_to_all(grad.contiguous(), ctx.gather, ctx.scatter, ctx.sp), None, None, None


def _all_to_all(x: Tensor, scatter: int, gather: int, group: SequenceGroup) -> Tensor:
    chunks = torch.stack(x.chunk(group.size, dim=scatter)).contiguous()        # (N, ...) one per process
    received = torch.empty_like(chunks)
    dist.all_to_all_single(received, chunks, group=group.group)
    return torch.cat(received.unbind(0), dim=gather)


def all_to_all(x: Tensor, scatter: int, gather: int, group: SequenceGroup) -> Tensor:
    return _AllToAll.apply(x, scatter, gather, group)


class _GatherFrames(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, dim: int, group: SequenceGroup) -> Tensor:
        ctx.dim, ctx.sp = dim, group
        parts = [torch.empty_like(x) for _ in range(group.size)]
        dist.all_gather(parts, x.contiguous(), group=group.group)
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.sp.group)          # every process's loss reads every part
        return grad.chunk(ctx.sp.size, dim=ctx.dim)[ctx.sp.rank], None, None


def gather(x: Tensor, dim: int, group: SequenceGroup) -> Tensor:
    """Every process's part of `x` along `dim`, in rank order (differentiable)."""
    return _GatherFrames.apply(x, dim, group)


def temporal_attention(attn, y: Tensor, frames: int, rope: tuple[Tensor, Tensor], group: SequenceGroup) -> Tensor:
    """y: (B, t*P, D), this process's t frames -> attention over all frames of each position, same layout."""
    y = rearrange(y, "b (t p) d -> b t p d", t=frames)
    y = all_to_all(y, scatter=2, gather=1, group=group)                # (B, T, P/N, D): every frame, some positions
    b = y.shape[0]
    y = rearrange(attn(rearrange(y, "b t p d -> (b p) t d"), rope=rope), "(b p) t d -> b t p d", b=b)
    y = all_to_all(y, scatter=1, gather=2, group=group)                # back: this process's frames, every position
    return rearrange(y, "b t p d -> b (t p) d")


def ulysses_attention(attn, x: Tensor, rope: tuple[Tensor, Tensor], group: SequenceGroup) -> Tensor:
    """Self-attention of `attn` (layers.Attention) over the whole sequence, x: (B, L/N, D) this
    process's tokens; rope: the whole sequence's (L, head_dim) tables."""
    q = attn.to_q(x)
    k, v = attn.to_kv(x).chunk(2, dim=-1)
    q, k, v = (rearrange(z, "b l (h d) -> b h l d", h=attn.heads) for z in (q, k, v))
    q, k, v = (all_to_all(z, scatter=1, gather=2, group=group) for z in (q, k, v))   # (B, H/N, L, d)
    q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
    out = attention(q, k, v, None)
    out = all_to_all(out, scatter=2, gather=1, group=group)                            # (B, H, L/N, d)
    return attn.to_out(rearrange(out, "b h l d -> b l (h d)"))


def split_backbone(backbone, group: SequenceGroup) -> None:
    """Split `backbone`'s tokens across the group: the backbones that can (a DiT, a wrapped open model's
    transformer) have split_sequence(group); any other is a one-line error."""
    if not hasattr(backbone, "split_sequence"):
        raise VidiffError(f"sequence parallelism splits a transformer's tokens across processes; this model is a "
                          f"{type(backbone).__name__} (train with ddp or fsdp, sample on one process)")
    backbone.split_sequence(group)


def sequence_group() -> SequenceGroup:
    """Every process of the job as one sequence-parallel group."""
    return SequenceGroup(dist.get_rank(), dist.get_world_size())
