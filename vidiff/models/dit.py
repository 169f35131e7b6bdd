"""Space-time diffusion transformer (DiT; Peebles & Xie 2023) for video, as in Latte and Open-Sora.

The video is cut into 3D patches (pt x ph x pw) that become tokens. Each block modulates its
sub-layers with adaLN-Zero from the noise level and the pooled caption (scale, shift and a gate
that starts at zero, so every block starts as the identity), and cross-attends to the caption tokens
(PixArt-alpha's choice: pooled conditioning alone cannot bind "red" to "circle" and "blue" to "square").

attention: "full" attends over all T*H*W tokens at once; "factorized" attends over the H*W tokens
of each frame, then over the T tokens of each position (Latte's comparison found factorized
attention cheaper at a small loss). Positions are 3D rotary embeddings in attention plus fixed
sinusoidal row/column features projected by a learned linear layer (rotary alone carries only
relative offsets, and a model must know where the walls are); both are functions of position, not
tables of a trained length, so the model runs at frame counts and sizes it was not trained at.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .layers import Attention, NoiseLevelEmbedding, rotary_axis_angles, sinusoidal_embedding
from .sequence_parallel import SequenceGroup, check_split, gather, temporal_attention, ulysses_attention

ATTENTION_MODES = ("full", "factorized")
POSITION_FEATURES = 32   # sin/cos features per spatial axis


def rotary_3d(frames: int, height: int, width: int, head_dim: int, device) -> tuple[Tensor, Tensor]:
    """cos/sin tables (frames*height*width, head_dim): a quarter of the rotated pairs follow the
    frame index, and three eighths each the row and the column, so q.k depends on the 3D offset."""
    half = head_dim // 2
    split = [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]
    t, h, w = torch.meshgrid(*(torch.arange(n, device=device) for n in (frames, height, width)), indexing="ij")
    angles = torch.cat([rotary_axis_angles(pos.flatten(), 2 * n) for pos, n in zip((t, h, w), split)], dim=-1)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def spatial_position_features(height: int, width: int, dim: int, device) -> Tensor:
    """(height*width, 2*dim) sin/cos features of each token's row and column."""
    h, w = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    return torch.cat([sinusoidal_embedding(h.flatten(), dim, 100.0), sinusoidal_embedding(w.flatten(), dim, 100.0)], -1)


# adaLN-Zero's modulation, one chunk of the block's `ada` output each (DiT's names): shift, scale and gate
# of the (spatial) attention and of the MLP, then of the temporal attention in a factorized block
MODULATION = ("shift_msa", "scale_msa", "gate_msa", "shift_mlp", "scale_mlp", "gate_mlp", "shift_t", "scale_t", "gate_t")


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    def __init__(self, dim: int, head_dim: int, context_dim: int, factorized: bool, mlp_ratio: float = 4.0):
        super().__init__()
        self.factorized = factorized
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, head_dim)
        if factorized:
            self.norm_t = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            self.attn_t = Attention(dim, head_dim)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross = Attention(dim, head_dim, context_dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.chunks = MODULATION if factorized else MODULATION[:6]
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, len(self.chunks) * dim))

    def modulation(self, cond: Tensor) -> dict[str, Tensor]:
        """(B, D) conditioning -> each named (B, D) modulation."""
        return dict(zip(self.chunks, self.ada(cond).chunk(len(self.chunks), dim=-1)))

    def chunk_rows(self, name: str) -> slice:
        """The rows of ada's output layer that make modulation `name`."""
        i, dim = self.chunks.index(name), self.ada[1].in_features
        return slice(i * dim, (i + 1) * dim)

    def forward(self, x: Tensor, cond: Tensor, context: Tensor, mask: Tensor, grid: tuple[int, int, int],
                rope: tuple[Tensor, Tensor], rope_s: tuple[Tensor, Tensor], rope_t: tuple[Tensor, Tensor],
                sequence: SequenceGroup | None = None) -> Tensor:
        """grid: this process's (frames, rows, columns) of tokens; with `sequence`, x holds only those
        frames, and attention across frames goes through the group (sequence_parallel.py)."""
        b = x.shape[0]
        t, h, w = grid
        m = self.modulation(cond)
        y = modulate(self.norm1(x), m["shift_msa"], m["scale_msa"])
        if self.factorized:                                   # per frame over H*W, then per position over T
            y = rearrange(y, "b (t p) d -> (b t) p d", t=t)
            y = rearrange(self.attn(y, rope=rope_s), "(b t) p d -> b (t p) d", b=b)
            x = x + m["gate_msa"][:, None] * y
            y = modulate(self.norm_t(x), m["shift_t"], m["scale_t"])
            if sequence is None:
                y = rearrange(y, "b (t p) d -> (b p) t d", t=t)
                y = rearrange(self.attn_t(y, rope=rope_t), "(b p) t d -> b (t p) d", b=b)
            else:
                y = temporal_attention(self.attn_t, y, t, rope_t, sequence)
            x = x + m["gate_t"][:, None] * y
        elif sequence is None:
            x = x + m["gate_msa"][:, None] * self.attn(y, rope=rope)
        else:
            x = x + m["gate_msa"][:, None] * ulysses_attention(self.attn, y, rope, sequence)
        x = x + self.cross(self.norm_cross(x), context, mask)
        return x + m["gate_mlp"][:, None] * self.mlp(modulate(self.norm2(x), m["shift_mlp"], m["scale_mlp"]))


class DiT3D(nn.Module):
    """forward(x (B,C,T,H,W), log_snr (B,), context (B,L,D), mask (B,L), frames (B,F,T,H,W) | None) -> like x."""

    def __init__(self, in_channels: int = 3, width: int = 256, depth: int = 8, head_dim: int = 32,
                 patch: tuple[int, int, int] = (1, 2, 2), attention: str = "factorized", context_dim: int = 128,
                 activation_checkpointing: bool = False, frame_channels: int = 0):
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ValueError(f"unknown DiT attention '{attention}'; choose one of: {', '.join(ATTENTION_MODES)}")
        self.patch, self.head_dim, self.in_channels = tuple(patch), head_dim, in_channels
        self.checkpointing = activation_checkpointing
        self.sequence: SequenceGroup | None = None    # set for sequence parallelism (sequence_parallel.py)
        self.embed = nn.Conv3d(in_channels, width, self.patch, stride=self.patch)
        # the frame condition (known frames + mask) gets its own zero-initialised patch embedding, added
        # to the main one: concatenation to x, but text-to-video weights load and start unchanged
        self.frame_embed = nn.Conv3d(frame_channels, width, self.patch, stride=self.patch) if frame_channels else None
        self.position = nn.Linear(2 * POSITION_FEATURES, width)
        self.noise_embed = NoiseLevelEmbedding(width, width)
        self.text_embed = nn.Linear(context_dim, width)
        self.blocks = nn.ModuleList(DiTBlock(width, head_dim, context_dim, attention == "factorized")
                                    for _ in range(depth))
        self.norm_out = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, in_channels * self.patch[0] * self.patch[1] * self.patch[2])
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's init (Peebles & Xie 2023, models.py), in one place: Xavier-uniform linear layers and
        patch embedding, N(0, 0.02) noise-level MLP, and adaLN-Zero: only the modulation layers and the
        output layer start at zero, so every block starts as the identity. Attention output projections
        must NOT also be zeroed: a block's attention branch is gate * to_out(...), and with both factors
        at zero each one's gradient is proportional to the other, so neither would ever move."""
        def basic(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.apply(basic)
        nn.init.xavier_uniform_(self.embed.weight.view(self.embed.weight.shape[0], -1))
        nn.init.zeros_(self.embed.bias)
        for layer in self.noise_embed.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.02)
        zeroed = [block.ada[1] for block in self.blocks] + [self.ada_out[1], self.out]
        for layer in zeroed + ([self.frame_embed] if self.frame_embed is not None else []):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    TEMPORAL = ("blocks.*.attn_t.*", "blocks.*.norm_t.*")

    def has_temporal_layers(self) -> bool:
        """Factorized attention has a temporal branch per block; full attention mixes frames everywhere."""
        return all(block.factorized for block in self.blocks)

    def reset_temporal(self) -> None:
        """Zero the temporal attention's output projection in every block, so each frame is processed
        alone, exactly as an image model would (inflation), and open its gate. Needs factorized
        attention: full attention has no separate temporal branch."""
        if not self.has_temporal_layers():
            raise ValueError("only a DiT with factorized attention has temporal layers to start as identity")
        with torch.no_grad():
            for block in self.blocks:
                nn.init.zeros_(block.attn_t.to_out.weight)
                nn.init.zeros_(block.attn_t.to_out.bias)
                # gate_t := 1, so the zeroed projection gets gradients: with both factors at zero neither
                # would move (see initialize_weights)
                rows = block.chunk_rows("gate_t")
                block.ada[1].weight[rows].zero_()
                block.ada[1].bias[rows].fill_(1.0)

    def check_shape(self, x: Tensor) -> None:
        if x.ndim != 5 or any(n % p for n, p in zip(x.shape[2:], self.patch)):
            raise ValueError(f"DiT3D takes (B, C, T, H, W) with T, H, W divisible by the patch {self.patch}, "
                             f"got shape {tuple(x.shape)}")

    def split_sequence(self, group: SequenceGroup) -> None:
        """Sequence parallelism: this process holds its frames of every clip (sequence_parallel.py); the
        interface every backbone that splits its tokens across processes has."""
        self.sequence = group

    def forward(self, x: Tensor, log_snr: Tensor, context: Tensor, mask: Tensor, frames: Tensor | None = None) -> Tensor:
        self.check_shape(x)
        pooled = (context * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        cond = self.noise_embed(log_snr) + self.text_embed(pooled)
        tokens = self.embed(x)                                                 # (B, D, T', H', W')
        if self.frame_embed is not None and frames is not None:
            tokens = tokens + self.frame_embed(frames)
        grid = tuple(tokens.shape[2:])
        t, h, w = grid
        position = self.position(spatial_position_features(h, w, POSITION_FEATURES, x.device))   # (H'W', D)
        tokens = rearrange(tokens, "b d t h w -> b t (h w) d") + position
        tokens = rearrange(tokens, "b t p d -> b (t p) d")
        rope = rotary_3d(t, h, w, self.head_dim, x.device)
        rope_s = rotary_3d(1, h, w, self.head_dim, x.device)
        rope_t = rotary_3d(t, 1, 1, self.head_dim, x.device)
        sp = self.sequence
        if sp is not None:                       # keep this process's frames; attention across them goes through sp
            check_split(sp, t, h * w, self.blocks[0].attn.heads, self.blocks[0].factorized)
            mine = sp.local(t)
            tokens = tokens[:, mine.start * h * w:mine.stop * h * w]
            grid = (mine.stop - mine.start, h, w)
        for block in self.blocks:
            args = (tokens, cond, context, mask, grid, rope, rope_s, rope_t, sp)
            if self.checkpointing and self.training and torch.is_grad_enabled():
                tokens = checkpoint(block, *args, use_reentrant=False)   # recompute activations in backward
            else:
                tokens = block(*args)
        shift, scale = self.ada_out(cond).chunk(2, dim=-1)
        out = self.out(modulate(self.norm_out(tokens), shift, scale))
        if sp is not None:
            out = gather(out, 1, sp)             # every frame, on every process
        pt, ph, pw = self.patch
        return rearrange(out, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)",
                         t=t, h=h, w=w, pt=pt, ph=ph, pw=pw)
