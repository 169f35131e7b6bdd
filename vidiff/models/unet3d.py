"""3D U-Net with factorized space-time blocks (Ho et al. 2022, "Video Diffusion Models").

Every block is a spatial 2D conv residual block (kernels 1x3x3, frames independent) followed by a
temporal 1D conv (3x1x1) and temporal self-attention over frames with rotary relative positions, so
the same weights run on any frame count, and a 1-frame video (an image) is valid input. Spatial
self-attention runs only at the lower resolutions where it is cheap.

Text conditioning: cross-attention from pixels to the caption tokens at the attention levels, plus
the pooled caption added to the noise-level embedding. We chose cross-attention over adaLN because
captions bind attributes to objects ("a red circle and a blue square"): a single pooled vector
given to adaLN mixes the pairs, while cross-attention lets each location attend to the words that
describe the object there (Imagen, Saharia et al. 2022, uses the same combination).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from .layers import Attention, NoiseLevelEmbedding


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame, not over the whole clip: frames then interact only
    through the temporal layers, so a 1-frame video is normalised exactly like an image and an image
    model inflated with zero-initialised temporal layers reproduces the image model frame by frame."""

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        z = x.view(b, self.num_groups, c // self.num_groups, t, h * w)
        var, mean = torch.var_mean(z, dim=(2, 4), keepdim=True, unbiased=False)
        z = ((z - mean) * torch.rsqrt(var + self.eps)).view(b, c, t, h, w)
        return z * self.weight.view(1, c, 1, 1, 1) + self.bias.view(1, c, 1, 1, 1)


class ResBlock3D(nn.Module):
    """Spatial residual block with scale-shift conditioning, then a residual temporal conv."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, in_ch)
        self.conv1 = nn.Conv3d(in_ch, out_ch, (1, 3, 3), padding=(0, 1, 1))
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = FrameGroupNorm(groups, out_ch)
        self.conv2 = zero_init(nn.Conv3d(out_ch, out_ch, (1, 3, 3), padding=(0, 1, 1)))
        self.skip = nn.Conv3d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.norm_t = FrameGroupNorm(groups, out_ch)
        self.conv_t = zero_init(nn.Conv3d(out_ch, out_ch, (3, 1, 1), padding=(1, 0, 0)))

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))                                # (B, C, T, H, W)
        scale, shift = rearrange(self.emb(F.silu(emb)), "b c -> b c 1 1 1").chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        x = self.skip(x) + h
        return x + self.conv_t(F.silu(self.norm_t(x)))


class SpatialAttention(nn.Module):
    """Per-frame self-attention over H*W positions, then cross-attention to the caption."""

    def __init__(self, ch: int, head_dim: int, context_dim: int):
        super().__init__()
        self.norm_self, self.self_attn = nn.LayerNorm(ch), Attention(ch, head_dim)
        self.norm_cross, self.cross_attn = nn.LayerNorm(ch), Attention(ch, head_dim, context_dim)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        b, _, t, h, w = x.shape
        z = rearrange(x, "b c t h w -> (b t) (h w) c")
        context = repeat(context, "b l d -> (b t) l d", t=t)
        mask = repeat(mask, "b l -> (b t) l", t=t)
        z = z + self.self_attn(self.norm_self(z))
        z = z + self.cross_attn(self.norm_cross(z), context, mask)
        return rearrange(z, "(b t) (h w) c -> b c t h w", b=b, h=h)


class TemporalAttention(nn.Module):
    """Per-pixel self-attention over frames with rotary (relative) frame positions."""

    def __init__(self, ch: int, head_dim: int):
        super().__init__()
        self.norm, self.attn = nn.LayerNorm(ch), Attention(ch, head_dim, rotary=True)

    def forward(self, x: Tensor) -> Tensor:
        b, _, _, h, w = x.shape
        z = rearrange(x, "b c t h w -> (b h w) t c")
        z = z + self.attn(self.norm(z))
        return rearrange(z, "(b h w) t c -> b c t h w", b=b, h=h, w=w)


class VideoBlock(nn.Module):
    """ResBlock3D -> [spatial self/cross-attention] -> temporal attention."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, head_dim: int,
                 context_dim: int, spatial_attention: bool):
        super().__init__()
        self.res = ResBlock3D(in_ch, out_ch, emb_dim, groups)
        self.spatial = SpatialAttention(out_ch, head_dim, context_dim) if spatial_attention else None
        self.temporal = TemporalAttention(out_ch, head_dim)

    def forward(self, x: Tensor, emb: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        x = self.res(x, emb)
        if self.spatial is not None:
            x = self.spatial(x, context, mask)
        return self.temporal(x)


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv3d(ch, ch, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv3d(ch, ch, (1, 3, 3), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest"))


class UNet3D(nn.Module):
    """forward(x (B,C,T,H,W), log_snr (B,), context (B,L,D), mask (B,L)) -> output like x."""

    def __init__(self, in_channels: int = 3, base_channels: int = 64, channel_mults=(1, 2, 2),
                 num_res_blocks: int = 1, attention_levels=(1, 2), head_dim: int = 32, groups: int = 16,
                 context_dim: int = 128):
        super().__init__()
        widths = [base_channels * m for m in channel_mults]
        emb_dim = 4 * base_channels
        self.levels = len(widths)
        self.noise_embed = NoiseLevelEmbedding(base_channels, emb_dim)
        self.text_embed = nn.Linear(context_dim, emb_dim)
        block = lambda i, o, lvl: VideoBlock(i, o, emb_dim, groups, head_dim, context_dim, lvl in attention_levels)

        self.stem = nn.Conv3d(in_channels, widths[0], (1, 3, 3), padding=(0, 1, 1))
        self.down, skips, ch = nn.ModuleList(), [widths[0]], widths[0]
        for lvl, width in enumerate(widths):
            for _ in range(num_res_blocks):
                self.down.append(block(ch, width, lvl))
                ch = width
                skips.append(ch)
            if lvl < self.levels - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)
        self.mid = nn.ModuleList([block(ch, ch, self.levels - 1), block(ch, ch, -1)])
        self.up = nn.ModuleList()
        for lvl, width in reversed(list(enumerate(widths))):
            for _ in range(num_res_blocks + 1):
                self.up.append(block(ch + skips.pop(), width, lvl))
                ch = width
            if lvl > 0:
                self.up.append(Upsample(ch))
        self.out = nn.Sequential(FrameGroupNorm(groups, ch), nn.SiLU(),
                                 zero_init(nn.Conv3d(ch, in_channels, (1, 3, 3), padding=(0, 1, 1))))

    def check_shape(self, x: Tensor) -> None:
        factor = 2 ** (self.levels - 1)
        if x.ndim != 5 or x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"UNet3D takes (B, C, T, H, W) with H and W divisible by {factor}, "
                             f"got shape {tuple(x.shape)}")

    def forward(self, x: Tensor, log_snr: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        self.check_shape(x)
        pooled = (context * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)   # (B, D)
        emb = self.noise_embed(log_snr) + self.text_embed(pooled)                # (B, E)
        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            h = layer(h) if isinstance(layer, Downsample) else layer(h, emb, context, mask)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb, context, mask)
        for layer in self.up:
            if isinstance(layer, Upsample):
                h = layer(h)
            else:
                h = layer(torch.cat([h, hs.pop()], dim=1), emb, context, mask)
        return self.out(h)
