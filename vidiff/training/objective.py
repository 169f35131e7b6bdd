"""What the diffusion loss (diffusion.training_loss) trains: the prediction, the schedule and how the
network is called, for vidiff's own models (from the config) and for open ones (from their bundle)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from ..config import Config


@dataclass(frozen=True)
class Objective:
    """The prediction, schedule and shift; `call(model, x, log_snr, cond, frames)`, how the network is
    called (a DDP/FSDP wrapper in the model's place; frames: the frame condition, or None); and the part
    of the time axis drawn from (one expert of a two-expert model: its side of the boundary)."""
    prediction: str
    schedule: str
    shift: float
    call: Callable[..., Tensor]
    times: tuple[float, float] = (0.0, 1.0)


def own_objective(cfg: Config, stride: Tensor | int = 1) -> Objective:
    """vidiff's own TextToVideoModel under the config's diffusion section; stride: each clip's frame
    stride, for a stride-conditioned model (model.stride_conditioning)."""
    def call(model, x: Tensor, log_snr: Tensor, ids: Tensor, frames: Tensor | None) -> Tensor:
        return model(x, log_snr, frames=frames, ids=ids, stride=stride)
    d = cfg.diffusion
    return Objective(d.prediction, d.schedule, d.shift, call)
