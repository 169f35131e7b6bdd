"""The denoising loop: model + classifier-free guidance + frame conditioning + sampler. Training uses
it for sample sheets, VideoPipeline for everything it generates."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import Tensor

from ..config import DiffusionConfig
from ..devices import autocast, randn
from ..diffusion import SAMPLERS, schedule_of, classifier_free_guidance, compositional_guidance, make_denoiser, sampling_grid
from ..diffusion.conditioning import frame_condition, reconstruction_guidance, replacement
from ..models import TextToVideoModel
from ..config import RECONSTRUCTION_WEIGHT

# how known frames condition the sample: a masked-frame model's own input (trained), or any model
# with VDM's reconstruction guidance or the plain replacement baseline (diffusion/conditioning.py)
METHODS = ("trained", "guidance", "replacement")


@dataclass
class SampleOptions:
    """How the denoising loop runs: the sampling option group of the Python API, the CLI and the web UI.
    None is the model's own setting (its config's diffusion section), filled in by `resolved`."""
    steps: int | None = None               # sampling steps
    guidance: float | None = None          # classifier-free guidance scale (1: none)
    sampler: str | None = None             # a key of vidiff.diffusion.SAMPLERS
    spacing: str | None = None             # a key of vidiff.diffusion.SPACINGS
    eta: float = 0.0                       # DDIM's noise (0: deterministic)
    progress: bool = True                  # a progress bar over the steps
    callback: Callable[[int, Tensor], None] | None = None   # callback(i, x0) after every step

    def filled(self, steps: int, guidance: float, sampler: str, spacing: str) -> SampleOptions:
        """These options with the given values where they say None."""
        given = dict(steps=steps, guidance=guidance, sampler=sampler, spacing=spacing)
        return replace(self, **{k: v for k, v in given.items() if getattr(self, k) is None})

    def resolved(self, diffusion: DiffusionConfig) -> SampleOptions:
        """The model's settings where these say None: its diffusion.sampling_steps, guidance, sampler and
        spacing; a distilled student's own step count on the uniform DDIM grid it learnt, no guidance."""
        if diffusion.distilled_steps:
            return self.filled(diffusion.distilled_steps, 1.0, "ddim", "uniform")
        return self.filled(diffusion.sampling_steps, diffusion.guidance, diffusion.sampler, diffusion.spacing)


@dataclass
class FrameConditioning:
    """How given frames (an image to animate, a video to extend or interpolate) condition the video: the
    conditioning option group beside SampleOptions."""
    method: str | None = None              # one of METHODS; None: "trained" for a masked-frame model, else "guidance"
    weight: float = RECONSTRUCTION_WEIGHT  # w_r of reconstruction guidance (method "guidance")
    history: float | None = None           # history guidance scale (method "trained"; 1: none; None: the
                                           # model's diffusion.history_guidance)


@dataclass
class KnownFrames:
    """Frames the video must contain, in model space, and how they condition it."""
    frames: Tensor                         # (B, C, T, H, W); only the frames in `mask` are read
    mask: Tensor                           # (T,) bool: the given frames
    method: str = "trained"                # one of METHODS
    weight: float = RECONSTRUCTION_WEIGHT  # w_r of reconstruction guidance (method "guidance")
    history: float = 1.0                   # history guidance scale (method "trained")


@dataclass
class GridSpan:
    """A run over part of the sampling grid: from x_T (noise if None; else a partly denoised video at grid
    point `start`) to grid point `stop` (None: the end; DDIM only otherwise, the result then unclipped)."""
    x_T: Tensor | None = None
    start: int = 0
    stop: int | None = None


def dtype_of(module: torch.nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


@torch.no_grad()
def sample_video(model: TextToVideoModel, diffusion: DiffusionConfig, ids: Tensor, shape: tuple[int, int, int, int],
                 options: SampleOptions | None = None, generator: torch.Generator | None = None, *,
                 clip_x0: bool = True, known: KnownFrames | None = None, stride: int = 1,
                 span: GridSpan | None = None) -> Tensor:
    """Generate (B, C, T, H, W) for tokenized prompts ids (B, L): videos in [-1, 1], or latents.

    shape is (C, T, H, W). The initial noise is drawn from `generator` where it lives: a CPU generator
    gives the same video on any device and batch layout, a CUDA one draws on its GPU. clip_x0: clip x0
    estimates to [-1, 1], for pixel models (latents have no known range). A model whose weights are
    bf16 or fp16 runs under autocast (the text encoder by its own weights' dtype); the sampler's
    arithmetic stays float64.
    known: frames the video must contain, put in by its method. Text guidance keeps the frame
    condition in both of its passes: it steers towards the prompt, not away from the frames. History
    guidance (known.history) adds a pass without the frames and steers towards them.
    options: unset ones are the model's own (SampleOptions.resolved).
    span: run only part of the grid, or from given noise (e.g. zero-shot video's translated noise).
    stride: the frame stride to make the video at (a stride-conditioned model); both guidance passes
    take it, like the frame condition.
    """
    o = (options or SampleOptions()).resolved(diffusion)
    span = span or GridSpan()
    x_T, start, stop = span.x_T, span.start, span.stop
    device, dtype = next(model.parameters()).device, dtype_of(model.backbone)
    ids = ids.to(device)
    with autocast(dtype_of(model.text_encoder), device):
        cond = model.encode(ids, stride)
        null = model.encode(model.tokenizer.empty(ids.shape[0]).to(device), stride)

    def net(x: Tensor, log_snr: Tensor, *args: Tensor) -> Tensor:
        with autocast(dtype, device):
            return model(x, log_snr, *args).float()   # guidance and the sampler's updates in full precision

    mask, history = None, None
    if known is not None:
        frames, mask = known.frames.to(device), known.mask.to(device)
        if known.method == "trained":
            condition = frame_condition(frames, mask)
            if known.history != 1.0:   # the prompt without the given frames (what a text-to-video mask shows)
                history = ((*cond, torch.zeros_like(condition)), known.history)
            cond, null = (*cond, condition), (*null, condition)
    if history is None:
        guided = classifier_free_guidance(net, cond, null, o.guidance, diffusion.guidance_interval)
    else:
        guided = compositional_guidance(net, cond, [(null, o.guidance), history], diffusion.guidance_interval)
    denoiser = make_denoiser(guided, diffusion.prediction, clip_x0=1.0 if clip_x0 else None)
    if known is not None:
        denoiser = (reconstruction_guidance(denoiser, frames, mask, known.weight) if known.method == "guidance"
                    else replacement(denoiser, frames, mask))
    x_T = (randn((ids.shape[0], *shape), generator, device) if x_T is None else x_T).to(device)
    log_snrs = sampling_grid(schedule_of(diffusion.schedule, diffusion.shift), o.steps, o.spacing).to(device)
    if not 0 <= start < (o.steps if stop is None else stop) <= o.steps:
        raise ValueError(f"cannot sample from grid point {start} to {stop} of {o.steps} steps")
    kwargs = {"eta": o.eta} if o.sampler == "ddim" else {}
    if stop is not None:
        if o.sampler != "ddim":
            raise ValueError("a partial run (stop) needs the DDIM sampler")
        log_snrs, kwargs["partial"] = log_snrs[:stop + 1], stop < o.steps
    x = SAMPLERS[o.sampler](denoiser, x_T, log_snrs[start:], generator=generator, callback=o.callback,
                            progress=o.progress, **kwargs)
    if stop is not None and stop < o.steps:
        return x
    if known is not None:   # exactly the given frames (stochastic samplers end within noise of them)
        x = torch.where(mask.view(1, 1, -1, 1, 1), frames.to(x.dtype), x)
    return x.clamp(-1, 1) if clip_x0 else x
