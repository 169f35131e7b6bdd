"""The runtime rules of the pipeline's inputs, in one place: the Python API and the CLI get the same
one-line errors (a VidiffError), never an exception from deep inside torch, PyAV or numpy, and values
that would silently give a black or noise video are refused with the range that works."""
from __future__ import annotations

import math
from numbers import Integral, Real

import torch

from ..diffusion import SAMPLERS, SPACINGS
from ..errors import VidiffError
from .sampling import FrameConditioning, SampleOptions

ECHO = 80                  # characters of a bad value an error repeats
MAX_GUIDANCE = 50.0        # classifier-free guidance past this saturates every pixel (1e30 gave all-black frames)
LORA_SCALES = (-2.0, 4.0)  # -5 gave black frames and 1e6 coloured noise on the embedded model
MAX_GUIDANCE_WEIGHT = 100.0
MAX_OUTPUT_SIDE = 4096     # pixels of an enlarged frame (--scale 1000 asked for 45.8 GiB)


def shown(value) -> str:
    text = repr(value)
    return text if len(text) <= ECHO else text[:ECHO] + f"... ({len(text)} characters)"


def whole(value, name: str, low: int = 1, high: int | None = None) -> int:
    """An int (not a bool, a float or a string) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise VidiffError(f"{name} must be a whole number {bound}, got {shown(value)}")
    return int(value)


def number(value, name: str, low: float, high: float) -> float:
    """A finite real number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or not low <= value <= high:
        raise VidiffError(f"{name} must be a finite number from {low:g} to {high:g}, got {shown(value)}")
    return float(value)


def prompt_list(prompt) -> list[str]:
    """A prompt or a non-empty list of them, each a non-blank string."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt) if isinstance(prompt, (list, tuple)) else None
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise VidiffError(f"the prompt must be a string or a list of strings, got {shown(prompt)}")
    if any(not p.strip() for p in prompts):
        raise VidiffError("the prompt is empty; describe the video, e.g. 'a red circle bouncing'")
    return prompts


def check_generator(value) -> torch.Generator | None:
    if value is not None and not isinstance(value, torch.Generator):
        raise VidiffError(f"generator must be a torch.Generator (e.g. torch.Generator().manual_seed(0)) or None, "
                          f"got {shown(value)}")
    return value


def check_callback(value):
    if value is not None and not callable(value):
        raise VidiffError(f"callback must be a function callback(step, x0) or None, got {shown(value)}")
    return value


def check_device(value) -> torch.device:
    """A device this torch build has: 'cpu', 'cuda', 'cuda:1', 'mps' or a torch.device."""
    try:
        d = torch.device(value)
    except (RuntimeError, TypeError):
        raise VidiffError(f"unknown device {shown(value)}; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(d.type, False):
        raise VidiffError(f"device '{d}' is not available in this torch build; use 'cpu'"
                          + (" or 'cuda'" if torch.cuda.is_available() else ""))
    if d.type == "cuda" and d.index is not None and d.index >= torch.cuda.device_count():
        raise VidiffError(f"device '{d}' does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return d


def check_guidance_scale(value) -> float:
    return number(value, "the guidance scale (--guidance)", 0.0, MAX_GUIDANCE)


def group(value, kind: type, name: str):
    if not isinstance(value, kind):
        raise VidiffError(f"{name} must be a vidiff.pipeline.{kind.__name__}, got {shown(value)}")
    return value


def sampling_group(value) -> SampleOptions:
    """The sampling options given (None: all the model's own), before their defaults are filled in."""
    return SampleOptions() if value is None else group(value, SampleOptions, "sampling")


def check_sample_options(o: SampleOptions, samplers=tuple(SAMPLERS), spacings=tuple(SPACINGS)) -> SampleOptions:
    """Resolved sampling options (no None left) that the loop can run; `samplers` and `spacings`: the
    names this pipeline takes."""
    group(o, SampleOptions, "sampling")
    whole(o.steps, "the number of sampling steps (--steps)", 1, 10_000)
    check_guidance_scale(o.guidance)
    number(o.eta, "--eta", 0.0, 1.0)
    for what, name, names in (("sampler (--sampler)", o.sampler, samplers), ("spacing (--spacing)", o.spacing, spacings)):
        if name not in names:
            raise VidiffError(f"unknown {what} {shown(name)}; choose one of: {', '.join(names)}")
    check_callback(o.callback)
    return o


def check_conditioning(c: FrameConditioning, methods: tuple[str, ...]) -> FrameConditioning:
    group(c, FrameConditioning, "conditioning")
    if c.method is not None and c.method not in methods:
        raise VidiffError(f"unknown conditioning method (--method) {shown(c.method)}; choose one of: {', '.join(methods)}")
    if c.weight is not None:
        check_guidance_weight(c.weight)
    if c.history is not None:
        number(c.history, "the history guidance scale (--history-guidance)", 0.0, MAX_GUIDANCE)
    return c


def check_lora_scale(value) -> float:
    return number(value, "--lora-scale", *LORA_SCALES)


def check_guidance_weight(value) -> float:
    return number(value, "the reconstruction guidance weight (--guidance-weight)", 0.0, MAX_GUIDANCE_WEIGHT)


def save_options(frames, index, fps, scale) -> None:
    """What VideoPipelineOutput.save takes: an index of its videos, a frame rate, an enlargement whose
    frames stay under MAX_OUTPUT_SIDE pixels."""
    whole(index, "index", 0, len(frames) - 1)
    whole(fps, "fps (--fps)", 1, 240)
    side = max(frames.shape[2:4])
    whole(scale, "scale (--scale)", 1, max(1, MAX_OUTPUT_SIDE // side))


def parse_size(value: str | None, flag: str = "--size") -> tuple[int | None, int | None]:
    """S or HxW in pixels -> (height, width); None or empty: the model's (None, None)."""
    if value is None or not str(value).strip():
        return None, None
    parts = str(value).lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise VidiffError(f"{flag} takes S or HxW in pixels, e.g. 32 or 480x832; got '{value}'")
    return int(parts[0]), int(parts[-1])
