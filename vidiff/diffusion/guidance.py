"""Classifier-free guidance (Ho & Salimans 2022) as a wrapper around a raw model function.

The conditional and unconditional passes run as one batch of 2B, which halves kernel launches and
keeps the backbone busy; outputs are extrapolated uncond + scale * (cond - uncond). Because eps, x0
and v are affine in one another for fixed (x_t, log_snr), guiding any of them is equivalent.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor


def classifier_free_guidance(model_fn: Callable[..., Tensor], cond: Sequence[Tensor],
                             uncond: Sequence[Tensor], scale: float) -> Callable[[Tensor, Tensor], Tensor]:
    """Return ``fn(x_t, log_snr)`` that evaluates ``model_fn(x, log_snr, *cond)`` guided by scale.

    cond and uncond are the extra model arguments (e.g. text context and mask), batched like x.
    scale = 1 is the plain conditional model, 0 the unconditional one.
    """
    if scale == 1.0:
        return lambda x, log_snr: model_fn(x, log_snr, *cond)
    both = [torch.cat([c, u]) for c, u in zip(cond, uncond)]

    def guided(x: Tensor, log_snr: Tensor) -> Tensor:
        out_cond, out_uncond = model_fn(torch.cat([x, x]), torch.cat([log_snr, log_snr]), *both).chunk(2)
        return out_uncond + scale * (out_cond - out_uncond)
    return guided
