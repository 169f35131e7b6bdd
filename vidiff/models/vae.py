"""Causal 3D convolutional video VAE (as in MAGVIT-v2, CogVideoX and Open-Sora).

Every convolution is causal in time (padded on the past side only), and temporal down-sampling keeps
the first frame apart: a clip of 1 + 4k frames becomes 1 + k latent frames, latent 0 depends on
frame 0 alone, so an image is a valid 1-frame video and an image VAE's job is a special case.
Spatial compression is 2^(levels - 1) (4x or 8x); temporal compression is 1x or 4x.
Normalisation is per pixel over channels (ChannelNorm), which keeps causality (nothing in frame t
sees frame t + 1) and lets tiles decode like whole frames.

Decoding can be tiled (`decode_tiled`): spatial tiles decoded with a margin as wide as the decoder's
reach and cropped (no blending: the result equals untiled decoding), and latent frames in chunks that
carry enough past latent frames to fill the causal receptive field, so long or large videos decode
in bounded memory.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..config import DECODE_TILE



def latent_frames(frames: int, time_factor: int) -> int | None:
    """The causal VAE's rule: `frames` = 1 + time_factor * k video frames make 1 + k latent frames (the
    first frame alone, then time_factor frames each); None for a count not of that form."""
    return None if frames < 1 or (frames - 1) % time_factor else 1 + (frames - 1) // time_factor

class CausalConv3d(nn.Conv3d):
    """k_t x k x k convolution that pads time on the past side only."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, time_kernel: int | None = None, stride=1):
        kt = kernel if time_kernel is None else time_kernel
        super().__init__(cin, cout, (kt, kernel, kernel), stride=stride, padding=(0, kernel // 2, kernel // 2))
        self.time_pad = kt - 1

    def forward(self, x: Tensor) -> Tensor:
        if self.time_pad:   # replicate the first frame into the past: no zeros that a 1-frame clip never sees
            x = torch.cat([x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1), x], dim=2)
        return super().forward(x)


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of each pixel of each frame. Being local, it keeps the VAE causal
    and makes tiled decoding match whole-frame decoding, which GroupNorm's whole-frame statistics do not."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        var, mean = torch.var_mean(x, dim=1, keepdim=True, unbiased=False)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight.view(shape) + self.bias.view(shape)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = ChannelNorm(cin), CausalConv3d(cin, cout)
        self.norm2, self.conv2 = ChannelNorm(cout), CausalConv3d(cout, cout)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Down(nn.Module):
    """Halve H and W; with `time`, also halve frames 1.. (frame 0 stays alone)."""

    def __init__(self, ch: int, time: bool):
        super().__init__()
        self.time = time
        self.conv = nn.Conv3d(ch, ch, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.time and x.shape[2] > 1:
            first, rest = x[:, :, :1], x[:, :, 1:]
            rest = F.avg_pool3d(rest, (2, 1, 1))
            x = torch.cat([first, rest], dim=2)
        return x


class Up(nn.Module):
    """Double H and W; with `time`, also double frames 1.. (the inverse of Down's frame count)."""

    def __init__(self, ch: int, time: bool):
        super().__init__()
        self.time = time
        self.conv = CausalConv3d(ch, ch)

    def forward(self, x: Tensor) -> Tensor:
        if self.time and x.shape[2] > 1:
            first, rest = x[:, :, :1], x[:, :, 1:]
            x = torch.cat([first, rest.repeat_interleave(2, dim=2)], dim=2)
        x = F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")
        return self.conv(x)


TEMPORAL_DOWNSAMPLES = (1, 4)   # frames packed per latent frame (after the first, which is encoded alone)


class VideoVAE(nn.Module):
    def __init__(self, in_channels: int = 3, channels: int = 64, channel_mults=(1, 2, 2),
                 latent_channels: int = 4, temporal_downsample: int = 1):
        super().__init__()
        if temporal_downsample not in TEMPORAL_DOWNSAMPLES or (temporal_downsample == 4 and len(channel_mults) < 3):
            raise ValueError("temporal_downsample must be 1, or 4 with at least 3 levels")
        self.levels, self.time_factor, self.latent_channels = len(channel_mults), temporal_downsample, latent_channels
        time_levels = {0, 1} if temporal_downsample == 4 else set()
        widths = [channels * m for m in channel_mults]
        enc = [CausalConv3d(in_channels, widths[0])]
        ch = widths[0]
        for i, width in enumerate(widths):
            enc.append(ResBlock(ch, width))
            ch = width
            if i < len(widths) - 1:
                enc.append(Down(ch, i in time_levels))
        enc += [ResBlock(ch, ch), ChannelNorm(ch), nn.SiLU(), CausalConv3d(ch, 2 * latent_channels)]
        self.encoder = nn.ModuleList(enc)
        dec = [CausalConv3d(latent_channels, ch), ResBlock(ch, ch)]
        for i, width in reversed(list(enumerate(widths))):
            dec.append(ResBlock(ch, width))
            ch = width
            if i > 0:
                dec.append(Up(ch, (i - 1) in time_levels))
        dec += [ChannelNorm(ch), nn.SiLU(), CausalConv3d(ch, in_channels)]
        self.decoder = nn.ModuleList(dec)

    @property
    def spatial_factor(self) -> int:
        return 2 ** (self.levels - 1)

    def check_shape(self, x: Tensor) -> None:
        f = self.spatial_factor
        if x.ndim != 5 or x.shape[-1] % f or x.shape[-2] % f or latent_frames(x.shape[2], self.time_factor) is None:
            raise ValueError(f"the VAE takes (B, C, T, H, W) with H, W divisible by {f} and T = 1 + "
                             f"{self.time_factor}k frames, got shape {tuple(x.shape)}")

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        f = self.spatial_factor
        return self.latent_channels, latent_frames(frames, self.time_factor), height // f, width // f

    @staticmethod
    def _run(layers: nn.ModuleList, x: Tensor) -> Tensor:
        for layer in layers:
            x = layer(x)
        return x

    def encode(self, x: Tensor, sample: bool = False,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(B, C, T, H, W) in [-1, 1] -> (z, posterior mean, log-variance); z is the mean unless `sample`."""
        self.check_shape(x)
        mean, logvar = self._run(self.encoder, x).chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device="cpu").to(mean.device, mean.dtype)
            z = mean + (0.5 * logvar).exp() * noise
        return z, mean, logvar

    def decode(self, z: Tensor) -> Tensor:
        return self._run(self.decoder, z)

    def forward(self, x: Tensor, generator: torch.Generator | None = None,
                latent_noise: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruction, posterior mean and log-variance. latent_noise: each clip's latent also gets
        Gaussian noise of a std drawn uniformly up to this, so the decoder learns to draw clean shapes from
        the slightly-off latents a diffusion model makes, not only from the encoder's."""
        z, mean, logvar = self.encode(x, sample=self.training, generator=generator)
        if latent_noise > 0:
            std = torch.rand(z.shape[0], generator=generator, device="cpu").to(z.device, z.dtype) * latent_noise
            noise = torch.randn(z.shape, generator=generator, device="cpu").to(z.device, z.dtype)
            z = z + std.view(-1, *[1] * (z.dim() - 1)) * noise
        return self.decode(z), mean, logvar

    def _reach(self, axis: str) -> int:
        """How many latent frames (axis 'time') or latent pixels ('space') of context can influence one
        decoded output: each conv reaches kernel // 2 (space) or time_pad (time) steps at its own
        resolution, i.e. that many divided by the up-sampling so far."""
        reach, scale = 0.0, 1
        for layer in self.decoder:
            if isinstance(layer, Up) and (axis == "space" or layer.time):
                scale *= 2
            for m in layer.modules():
                if isinstance(m, CausalConv3d):
                    reach += (m.time_pad if axis == "time" else m.kernel_size[1] // 2) / scale
        return int(reach + 0.999) + 1

    def receptive_frames(self) -> int:
        return self._reach("time")

    @torch.no_grad()
    def decode_tiled(self, z: Tensor, tile: int = DECODE_TILE, frames: int = 8, progress: bool = False) -> Tensor:
        """Decode in spatial tiles of `tile` x `tile` latent pixels and chunks of `frames` latent frames,
        in memory bounded by the tile and chunk size, with the same result as `decode` (up to float
        rounding). Each tile is decoded with a margin as wide as the decoder's spatial reach and cropped,
        so no output pixel sees a tile border. A later chunk is decoded after latent frame 0 (which keeps
        the first-frame rule) and enough past latent frames to fill the causal reach; the outputs of those
        context frames are dropped."""
        t, tf = z.shape[2], self.time_factor
        context = self.receptive_frames()
        chunks = []
        for start in tqdm(range(0, t, frames), desc="decode", disable=not progress, leave=False):
            stop = min(start + frames, t)
            if start == 0:
                chunks.append(self._decode_spatial_tiles(z[:, :, :stop], tile))
                continue
            lo = max(1, start - context)
            part = self._decode_spatial_tiles(torch.cat([z[:, :, :1], z[:, :, lo:stop]], dim=2), tile)
            chunks.append(part[:, :, 1 + (start - lo) * tf:])
        return torch.cat(chunks, dim=2)

    def _decode_spatial_tiles(self, z: Tensor, tile: int) -> Tensor:
        h, w = z.shape[-2:]
        if h <= tile and w <= tile:
            return self.decode(z)
        f, margin = self.spatial_factor, self._reach("space")
        rows = []
        for top in range(0, h, tile):
            row = []
            for left in range(0, w, tile):
                t0, l0 = max(0, top - margin), max(0, left - margin)
                piece = self.decode(z[:, :, :, t0:min(h, top + tile + margin), l0:min(w, left + tile + margin)])
                row.append(piece[..., (top - t0) * f:(top - t0 + min(tile, h - top)) * f,
                                 (left - l0) * f:(left - l0 + min(tile, w - left)) * f])
            rows.append(torch.cat(row, dim=-1))
        return torch.cat(rows, dim=-2)
