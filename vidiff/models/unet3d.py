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
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .layers import Attention, NoiseLevelEmbedding


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


# Layout: inside the network a video is a batch of frames, (B*T, C, H, W) in channels-last memory,
# i.e. bytes ordered (B, T, H, W, C). Spatial convs and per-frame norms then run as native 2D ops
# on it, attention reads its tokens without copies, and a temporal conv sees the same bytes as a
# channels-last (B, C, T, H*W) image. Weights keep Conv3d shapes, so checkpoints do not depend on this.

def frames_to_time(x: Tensor, frames: int) -> Tensor:
    """(B*T, C, H, W) channels-last -> (B, C, T, H*W) channels-last, a view when x is contiguous."""
    bt, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(bt // frames, frames, h * w, c).permute(0, 3, 1, 2)


def time_to_frames(x: Tensor, height: int) -> Tensor:
    b, c, t, hw = x.shape
    return x.permute(0, 2, 3, 1).reshape(b * t, height, hw // height, c).permute(0, 3, 1, 2)


class SpatialConv(nn.Conv3d):
    """A 1 x k x k Conv3d applied to a batch of frames (B*T, C, H, W) as a Conv2d."""

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight[:, :, 0], self.bias, self.stride[1:], self.padding[1:])


class TemporalConv(nn.Conv3d):
    """A k x 1 x 1 Conv3d over frames, run as a (k, 1) Conv2d on the (B, C, T, H*W) view."""

    def forward(self, x: Tensor, frames: int) -> Tensor:
        y = F.conv2d(frames_to_time(x, frames), self.weight[..., 0], self.bias, 1, (self.padding[0], 0))
        return time_to_frames(y, x.shape[2])


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame, not over the whole clip: frames then interact only
    through the temporal layers, so a 1-frame video is normalised exactly like an image and an image
    model inflated with zero-initialised temporal layers reproduces the image model frame by frame.
    On the (B*T, C, H, W) layout this is the native (fused, channels-last aware) group norm."""

    def forward(self, x: Tensor, scale: Tensor | None = None, shift: Tensor | None = None) -> Tensor:
        if scale is None and (x.requires_grad or not self.weight.requires_grad):
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        if scale is None:   # torch 2.13's CPU group_norm backward segfaults on a channels-last input that
            # needs no grad with an affine that does (layers frozen below, train.trainable): apply it apart
            return torch.addcmul(self.bias[:, None, None], F.group_norm(x, self.num_groups, None, None, self.eps),
                                 self.weight[:, None, None])
        # (norm * w + b) * (1 + scale) + shift, folded into one multiply-add pass over the activations
        gain = 1 + scale
        return torch.addcmul(self.bias[:, None, None] * gain + shift,
                             F.group_norm(x, self.num_groups, None, None, self.eps), self.weight[:, None, None] * gain)


class ResBlock3D(nn.Module):
    """Spatial residual block with scale-shift conditioning, then a residual temporal conv."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int):
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, in_ch)
        self.conv1 = SpatialConv(in_ch, out_ch, (1, 3, 3), padding=(0, 1, 1))
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = FrameGroupNorm(groups, out_ch)
        self.conv2 = SpatialConv(out_ch, out_ch, (1, 3, 3), padding=(0, 1, 1))
        self.skip = SpatialConv(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.norm_t = FrameGroupNorm(groups, out_ch)
        self.conv_t = TemporalConv(out_ch, out_ch, (3, 1, 1), padding=(1, 0, 0))
        self.per_frame = False      # zero-shot: the temporal conv sees each frame alone, as in image training

    def forward(self, x: Tensor, emb: Tensor, frames: int) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))                                   # (B*T, C, H, W)
        scale, shift = self.emb(F.silu(emb)).repeat_interleave(frames, 0)[..., None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h, scale, shift)))
        x = self.skip(x) + h
        return x + self.conv_t(F.silu(self.norm_t(x)), 1 if self.per_frame else frames)


def to_tokens(x: Tensor) -> Tensor:
    """(N, C, H, W) channels-last -> (N, H*W, C) without a copy."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w, c)


def from_tokens(z: Tensor, height: int) -> Tensor:
    n, hw, c = z.shape
    return z.reshape(n, height, hw // height, c).permute(0, 3, 1, 2)


class SpatialAttention(nn.Module):
    """Per-frame self-attention over H*W positions, then cross-attention to the caption."""

    def __init__(self, ch: int, head_dim: int, context_dim: int):
        super().__init__()
        self.norm_self, self.self_attn = nn.LayerNorm(ch), Attention(ch, head_dim)
        self.norm_cross, self.cross_attn = nn.LayerNorm(ch), Attention(ch, head_dim, context_dim)
        self.cross_frame = False    # Text2Video-Zero: every frame's self-attention reads frame 0's keys/values

    def forward(self, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        z = to_tokens(x)                                                       # (B*T, H*W, C)
        normed = self.norm_self(z)
        if self.cross_frame:
            b = context.shape[0]
            first = normed.unflatten(0, (b, -1))[:, :1].expand(-1, normed.shape[0] // b, -1, -1)
            z = z + self.self_attn(normed, context=first.flatten(0, 1))
        else:
            z = z + self.self_attn(normed)
        # each query attends to its own caption whatever its frame: one (B, T*H*W) sequence per clip
        # avoids projecting the caption once per frame
        zb = z.reshape(context.shape[0], -1, z.shape[-1])
        zb = zb + self.cross_attn(self.norm_cross(zb), context, mask)
        return from_tokens(zb.reshape(z.shape), x.shape[2])


class TemporalAttention(nn.Module):
    """Per-pixel self-attention over frames with rotary (relative) frame positions."""

    def __init__(self, ch: int, head_dim: int):
        super().__init__()
        self.norm, self.attn = nn.LayerNorm(ch), Attention(ch, head_dim, rotary=True)
        self.per_frame = False      # zero-shot: each frame attends to itself only, as in image training

    def forward(self, x: Tensor, frames: int) -> Tensor:
        bt, c, h, w = x.shape
        frames = 1 if self.per_frame else frames
        z = rearrange(to_tokens(x), "(b t) p c -> (b p) t c", t=frames)
        dz = rearrange(self.attn(self.norm(z)), "(b p) t c -> (b t) p c", p=h * w)
        # the residual sum is a new tensor, not a view: FSDP2 needs each block to return one
        return x + from_tokens(dz, h)


class VideoBlock(nn.Module):
    """ResBlock3D -> [spatial self/cross-attention] -> temporal attention."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, head_dim: int,
                 context_dim: int, spatial_attention: bool):
        super().__init__()
        self.res = ResBlock3D(in_ch, out_ch, emb_dim, groups)
        self.spatial = SpatialAttention(out_ch, head_dim, context_dim) if spatial_attention else None
        self.temporal = TemporalAttention(out_ch, head_dim)

    def forward(self, x: Tensor, emb: Tensor, context: Tensor, mask: Tensor, frames: int) -> Tensor:
        x = self.res(x, emb, frames)
        if self.spatial is not None:
            x = self.spatial(x, context, mask)
        return self.temporal(x, frames)


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = SpatialConv(ch, ch, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = SpatialConv(ch, ch, (1, 3, 3), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def _per_frame(x: Tensor) -> Tensor:
    return rearrange(x, "b c t h w -> (b t) c h w").contiguous(memory_format=torch.channels_last)


class UNet3D(nn.Module):
    """forward(x (B,C,T,H,W), log_snr (B,), context (B,L,D), mask (B,L), frames (B,F,T,H,W) | None) -> like x.

    With frame_channels F > 0 the model also reads a frame condition (known frames and their mask,
    diffusion/conditioning.py) through its own zero-initialised stem, added to the main stem's output:
    the same as concatenating it to x's channels, but a text-to-video checkpoint loads unchanged and
    starts out computing exactly what it did."""

    def __init__(self, in_channels: int = 3, base_channels: int = 64, channel_mults=(1, 2, 2),
                 num_res_blocks: int = 1, attention_levels=(1, 2), head_dim: int = 32, groups: int = 16,
                 context_dim: int = 128, frame_channels: int = 0, activation_checkpointing: bool = False):
        super().__init__()
        self.checkpointing = activation_checkpointing
        widths = [base_channels * m for m in channel_mults]
        emb_dim = 4 * base_channels
        self.levels = len(widths)
        self.noise_embed = NoiseLevelEmbedding(base_channels, emb_dim)
        self.text_embed = nn.Linear(context_dim, emb_dim)
        block = lambda i, o, lvl: VideoBlock(i, o, emb_dim, groups, head_dim, context_dim, lvl in attention_levels)

        self.stem = SpatialConv(in_channels, widths[0], (1, 3, 3), padding=(0, 1, 1))
        self.frame_stem = SpatialConv(frame_channels, widths[0], (1, 3, 3), padding=(0, 1, 1)) if frame_channels else None
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
                                 SpatialConv(ch, in_channels, (1, 3, 3), padding=(0, 1, 1)))
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """PyTorch's default init, except that the last layer of every residual branch starts at zero
        (the second conv and the temporal conv of each ResBlock3D, every attention's output projection)
        and so does the output conv: each block starts as the identity, and the temporal layers of
        an inflated image model add nothing until trained; so does the frame stem. These branches have
        no gate in front of them, so their zeroed weights still get gradients from the branch input."""
        for module in self.modules():
            if isinstance(module, ResBlock3D):
                zero_init(module.conv2), zero_init(module.conv_t)
            elif isinstance(module, Attention):
                zero_init(module.to_out)
        zero_init(self.out[-1])
        if self.frame_stem is not None:
            zero_init(self.frame_stem)

    def set_cross_frame(self, on: bool) -> int:
        """Text2Video-Zero's mode on (or off): every spatial attention reads frame 0's keys and values,
        and the temporal layers see each frame alone, as an image model saw its 1-frame training clips
        (at 16 frames its untrained temporal attention would average the frames and pin the objects).
        Returns how many spatial attention layers there are (0: none to do it with)."""
        layers = [m for m in self.modules() if isinstance(m, SpatialAttention)]
        for layer in layers:
            layer.cross_frame = on
        for module in self.modules():
            if isinstance(module, (ResBlock3D, TemporalAttention)):
                module.per_frame = on and bool(layers)
        return len(layers)

    # the layers that mix frames: what AnimateDiff-style training (train.trainable: temporal) updates
    TEMPORAL = ("*.res.norm_t.*", "*.res.conv_t.*", "*.temporal.*")

    def has_temporal_layers(self) -> bool:
        return True

    def reset_temporal(self) -> None:
        """Zero the output of every temporal branch (the temporal conv, temporal attention's output
        projection): each frame is then processed alone, exactly as an image model would (inflation)."""
        for module in self.modules():
            if isinstance(module, ResBlock3D):
                zero_init(module.conv_t)
            elif isinstance(module, TemporalAttention):
                zero_init(module.attn.to_out)

    def check_shape(self, x: Tensor) -> None:
        factor = 2 ** (self.levels - 1)
        if x.ndim != 5 or x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"UNet3D takes (B, C, T, H, W) with H and W divisible by {factor}, "
                             f"got shape {tuple(x.shape)}")

    def _block(self, block: VideoBlock, h: Tensor, emb: Tensor, context: Tensor, mask: Tensor, frames: int) -> Tensor:
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, h, emb, context, mask, frames, use_reentrant=False)   # recompute in backward
        return block(h, emb, context, mask, frames)

    def forward(self, x: Tensor, log_snr: Tensor, context: Tensor, mask: Tensor, frames: Tensor | None = None) -> Tensor:
        self.check_shape(x)
        pooled = (context * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)   # (B, D)
        emb = self.noise_embed(log_snr) + self.text_embed(pooled)                # (B, E)
        b, _, t, _, _ = x.shape
        h = self.stem(_per_frame(x))
        if self.frame_stem is not None and frames is not None:
            h = h + self.frame_stem(_per_frame(frames))
        hs = [h]
        for layer in self.down:
            h = layer(h) if isinstance(layer, Downsample) else self._block(layer, h, emb, context, mask, t)
            hs.append(h)
        for layer in self.mid:
            h = self._block(layer, h, emb, context, mask, t)
        for layer in self.up:
            if isinstance(layer, Upsample):
                h = layer(h)
            else:
                h = self._block(layer, torch.cat([h, hs.pop()], dim=1), emb, context, mask, t)
        return rearrange(self.out(h), "(b t) c h w -> b c t h w", b=b).contiguous()
