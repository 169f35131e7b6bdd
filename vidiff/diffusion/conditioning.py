"""Conditioning a video denoiser on frames a user already has: the frame masks that say which frames
are known (the first for image-to-video, the first k for extension, every k-th for interpolation);
the frame condition a masked-frame model is trained with; and, for any model with no training,
replacement and reconstruction guidance (Ho et al. 2022, "Video Diffusion Models", sec. 3.1), as
wrappers of a denoiser (x_t, log_snr) -> (x0, eps).

A trained masked-frame model (model.frame_conditioning) reads `frame_condition(known, mask)`: the
known frames (zero elsewhere) and the mask as one more channel, the input of VDM's and SVD's
concatenation conditioning. It is trained on fully noised videos with loss on the unknown frames
only, so at sampling its x_t at the known frames must follow the forward process of the known data:
`replacement` below does exactly that, and the trained method is the model with both.

Both wrappers keep the known frames on the forward process of the known data: their x0 estimate is
replaced by the data, and eps is made consistent with it, so a deterministic sampler carries the
known frames' initial noise down to exactly the data. They differ in what the unknown frames learn
of the known ones. Replacement only lets the network see noisy known frames, which at high noise
says little: the unknown frames under-react. Reconstruction guidance also moves the unknown
frames' x0 estimate down the gradient of the known frames' reconstruction error (VDM eq. 7):

    x~_b = x^_b - (w_r alpha_t / 2) grad_{z_b} ||x_a - x^_a(z_t)||^2
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..config import RECONSTRUCTION_WEIGHT
from .objectives import Denoiser
from .schedules import alpha_sigma

MASK_KINDS = ("none", "first", "first_k", "every_k", "random")


def frame_mask(kind: str, frames: int, k: int = 1, generator: torch.Generator | None = None) -> Tensor:
    """(frames,) bool, True at known frames: none (text-to-video), first (image-to-video), first_k
    (extension), every_k (interpolation: frames 0, k, 2k, ...), random (each frame known with
    probability 1/2, never all)."""
    mask = torch.zeros(frames, dtype=torch.bool)
    if kind == "first":
        mask[0] = True
    elif kind == "first_k":
        mask[:k] = True
    elif kind == "every_k":
        mask[::k] = True
    elif kind == "random":
        mask = torch.rand(frames, generator=generator) < 0.5
        if mask.all():
            mask[-1] = False
    elif kind != "none":
        raise ValueError(f"unknown frame mask '{kind}'; choose one of: {', '.join(MASK_KINDS)}")
    return mask


def k_range(kind: str, frames: int) -> tuple[int, int] | None:
    """[low, high] that k of a `first_k` (up to half the clip) or `every_k` (every 2nd to 5th frame)
    training mask is drawn from; None for the kinds without a k."""
    return {"first_k": (2, max(2, frames // 2)), "every_k": (2, 5)}.get(kind)



def draw_masks(weights: dict[str, float], frames: int, batch: int, generator: torch.Generator) -> Tensor:
    """(batch, frames) bool training masks: a kind per sample with probability proportional to
    weights[kind], then k uniform in k_range. A 1-frame clip (an image) is never conditioned."""
    kinds = [k for k in MASK_KINDS if weights.get(k, 0) > 0]
    if frames == 1 or not kinds:
        return torch.zeros(batch, frames, dtype=torch.bool)
    p = torch.tensor([weights[k] for k in kinds], dtype=torch.float64)
    picks = torch.multinomial(p / p.sum(), batch, replacement=True, generator=generator)
    masks = []
    for i in picks.tolist():
        kind, k, bounds = kinds[i], 1, k_range(kinds[i], frames)
        if bounds is not None:
            k = int(torch.randint(bounds[0], bounds[1] + 1, (1,), generator=generator))
        masks.append(frame_mask(kind, frames, min(k, frames - 1), generator))
    return torch.stack(masks)


def frame_condition(known: Tensor, mask: Tensor) -> Tensor:
    """The masked-frame model's extra input: (B, C + 1, T, H, W), the known frames where mask (T,) or
    (B, T) is True and zero elsewhere, then the mask itself. An all-False mask gives all zeros, which
    is what the model sees for plain text-to-video (and for frame-condition dropout)."""
    m = _frames(mask, known).to(known.dtype).expand(known.shape[0], 1, -1, *known.shape[3:])
    return torch.cat([known * m, m], dim=1)


def _frames(mask: Tensor, like: Tensor) -> Tensor:
    """A (T,) or (B, T) frame mask shaped to broadcast over (B, C, T, H, W)."""
    mask = mask.to(like.device)
    return mask.view(1, 1, -1, 1, 1) if mask.ndim == 1 else mask[:, None, :, None, None]


def _with_known(x_t: Tensor, log_snr: Tensor, x0: Tensor, known: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """x0 with the known frames set to the data, and the eps that goes with it."""
    alpha, sigma = alpha_sigma(log_snr.view(-1, 1, 1, 1, 1).to(x_t.dtype))
    x0 = torch.where(_frames(mask, x0), known.to(x0.dtype), x0)
    return x0, (x_t - alpha * x0) / sigma


def replacement(denoiser: Denoiser, known: Tensor, mask: Tensor) -> Denoiser:
    """The baseline: the known frames are replaced by the data, the network sees only noisy known frames.
    known: (B, C, T, H, W) with the data at the frames where mask (T,) is True (other frames ignored)."""
    def denoise(x_t: Tensor, log_snr: Tensor) -> tuple[Tensor, Tensor]:
        x0, _ = denoiser(x_t, log_snr)
        return _with_known(x_t, log_snr, x0, known, mask)
    return denoise


def reconstruction_guidance(denoiser: Denoiser, known: Tensor, mask: Tensor,
                            weight: float = RECONSTRUCTION_WEIGHT) -> Denoiser:
    """Replacement plus VDM's reconstruction guidance of weight w_r on the unknown frames (VDM's videos
    used w_r > 1). The denoiser must be differentiable in x_t: each call costs a backward pass."""
    def denoise(x_t: Tensor, log_snr: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            z = x_t.detach().requires_grad_(True)
            x0, _ = denoiser(z, log_snr)
            frames = _frames(mask, x0)
            error = ((known.to(x0.dtype) - x0) * frames).pow(2).sum()
            grad, = torch.autograd.grad(error, z)
        alpha, _ = alpha_sigma(log_snr.view(-1, 1, 1, 1, 1).to(x_t.dtype))
        x0 = x0.detach() - (weight * alpha / 2) * grad * ~frames
        return _with_known(x_t, log_snr, x0, known, mask)
    return denoise
