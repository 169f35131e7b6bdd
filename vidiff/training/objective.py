"""An open model's training objective, passed to the diffusion loss (diffusion.training_loss)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor


@dataclass(frozen=True)
class Objective:
    """What an open model trains on instead of the config's diffusion section: its bundle's prediction,
    schedule and shift, `call(model, x, log_snr, cond)` (how its network is called, DDP/FSDP wrapper
    and all), and the part of the time axis drawn from (one expert of a two-expert model: its side of
    the boundary)."""
    prediction: str
    schedule: str
    shift: float
    call: Callable[..., Tensor]
    times: tuple[float, float] = (0.0, 1.0)
