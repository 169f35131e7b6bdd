"""Building blocks shared by the backbones: noise-level embedding, rotary positions, attention."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def sinusoidal_embedding(x: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """(B,) scalars -> (B, dim) sin/cos features at geometrically spaced frequencies (Vaswani et al.)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    args = x.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class NoiseLevelEmbedding(nn.Module):
    """Embeds the log-SNR. Scaling by 25 spreads [-20, 20] over the range a 1000-step timestep covers."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, log_snr: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(25.0 * log_snr, self.dim))


def rotary_axis_angles(positions: Tensor, dim: int, base: float = 10000.0) -> Tensor:
    """(L,) positions -> (L, dim / 2) rotation angles at geometrically spaced frequencies."""
    inv_freq = 1.0 / base ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim)
    return positions.float()[:, None] * inv_freq[None]


def rotary_tables(length: int, head_dim: int, device, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos/sin tables (length, head_dim) for rotary position embedding (Su et al. 2021, RoFormer)."""
    angles = rotary_axis_angles(torch.arange(length, device=device), head_dim, base)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate (..., L, head_dim) features; q.k then depends only on the position offset."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat([-x2, x1], dim=-1) * sin.to(x.dtype)


# The fused attention kernels put the batch of sequences on a CUDA grid axis limited to 65,535 blocks: on
# an H200, cuDNN and flash attention failed at 65,536 sequences (the U-Net's temporal attention at 64x64,
# batch 16 has B*H*W = 65,536), memory-efficient attention did not. Larger batches run in chunks; a
# power of two well inside the limit, since each chunk is still a full kernel launch's worth of work.
MAX_ATTENTION_BATCH = 32_768


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """scaled_dot_product_attention on (N, heads, L, d), in chunks of at most MAX_ATTENTION_BATCH
    sequences; mask (N, 1, 1, S) or None."""
    n, limit = q.shape[0], MAX_ATTENTION_BATCH
    if n <= limit:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return torch.cat([F.scaled_dot_product_attention(q[i:i + limit], k[i:i + limit], v[i:i + limit],
                                                     attn_mask=None if mask is None else mask[i:i + limit])
                      for i in range(0, n, limit)])


class Attention(nn.Module):
    """Multi-head attention on (N, L, dim) tokens through scaled_dot_product_attention.

    Self-attention when context is None, else cross-attention to (N, S, context_dim) with an optional
    (N, S) boolean key mask (True = attend). rotary=True adds relative positions along L.
    """

    def __init__(self, dim: int, head_dim: int, context_dim: int | None = None, rotary: bool = False):
        super().__init__()
        self.heads, self.head_dim, self.rotary = dim // head_dim, head_dim, rotary
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)   # initialised by the owning backbone (see its initialize_weights)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """rope: precomputed (cos, sin) tables (L, head_dim), e.g. 3D positions; else 1D if rotary."""
        q = self.to_q(x)
        k, v = self.to_kv(x if context is None else context).chunk(2, dim=-1)
        q, k, v = (rearrange(z, "n l (h d) -> n h l d", h=self.heads) for z in (q, k, v))
        if rope is None and self.rotary:
            rope = rotary_tables(x.shape[1], self.head_dim, x.device)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        attn_mask = None if mask is None else mask[:, None, None, :]  # (N, 1, 1, S)
        out = attention(q, k, v, attn_mask)
        return self.to_out(rearrange(out, "n h l d -> n l (h d)"))
