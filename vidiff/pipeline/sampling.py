"""The denoising loop: model + classifier-free guidance + frame conditioning + sampler. Training uses
it for sample sheets, VideoPipeline for everything it generates."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import Tensor

from ..config import RECONSTRUCTION_WEIGHT
from ..devices import randn
from ..diffusion import (SAMPLERS, SPACINGS, classifier_free_guidance, compositional_guidance, make_denoiser, model_input,
                         sampling_grid, schedule_of)
from ..diffusion.conditioning import frame_condition, reconstruction_guidance, replacement
from ..models.bundle import Bundle
from .context_windows import windowed
from .schedulers import MODEL_SPACING, SCHEDULER, model_grid, scheduler_sampler

# how known frames condition the sample: a masked-frame model's own input (trained), or any model
# with VDM's reconstruction guidance or the plain replacement baseline (diffusion/conditioning.py)
METHODS = ("trained", "guidance", "replacement")


FEW_STEP = dict(steps=4, guidance=1.0, sampler="flow-euler", spacing="uniform", shift=5.0)


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
    guidance_2: float | None = None        # a two-expert model's guidance for its second expert (None: its
                                           # default where guidance is unset, else guidance, as in diffusers)
    shift: float | None = None             # the schedule's time shift for vidiff's spacings (None: the model's)

    @classmethod
    def few_step(cls, **given) -> SampleOptions:
        """The recipe published with step-distilled flow LoRAs (lightx2v's CausVid, Self-Forcing and
        Lightning for Wan): 4 Euler steps at timesteps 1000/750/500/250 warped by shift 5 (uniform
        spacing of the shifted schedule), no classifier-free guidance. `given` overrides any of them."""
        return cls(**{**FEW_STEP, **{k: v for k, v in given.items() if v is not None}})

    @property
    def guided(self) -> bool:
        """Whether any step runs classifier-free guidance (and so needs the negative prompt's states)."""
        return self.guidance != 1.0 or self.guidance_2 not in (None, 1.0)

    def filled(self, steps: int, guidance: float, sampler: str, spacing: str) -> SampleOptions:
        """These options with the given values where they say None."""
        given = dict(steps=steps, guidance=guidance, sampler=sampler, spacing=spacing)
        return replace(self, **{k: v for k, v in given.items() if getattr(self, k) is None})

    def resolved(self, bundle: Bundle) -> SampleOptions:
        """The model's settings where these say None (Bundle.defaults: a vidiff model's config's
        diffusion section, a family's pipeline defaults); a distilled student's own step count on the
        uniform DDIM grid it learnt, no guidance."""
        if bundle.distilled_steps:
            return self.filled(bundle.distilled_steps, 1.0, "ddim", "uniform")
        d = bundle.defaults
        o = self.filled(d.steps, d.guidance, d.sampler, d.spacing)
        if bundle.low_noise is not None and o.guidance_2 is None:
            o = replace(o, guidance_2=d.guidance_2 if self.guidance is None and d.guidance_2 is not None
                        else o.guidance)
        return o


@dataclass
class FrameConditioning:
    """How given frames (an image to animate, a video to extend or interpolate) condition the video: the
    conditioning option group beside SampleOptions."""
    method: str | None = None              # one of METHODS; None: "trained" for a masked-frame model, else "guidance"
    weight: float | None = None            # w_r of reconstruction guidance (method "guidance"; None: config.
                                           # RECONSTRUCTION_WEIGHT)
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


def samplers_of(bundle: Bundle) -> dict:
    """The samplers a model runs with: vidiff's, and its directory's own diffusers scheduler."""
    return {**SAMPLERS, **({SCHEDULER: scheduler_sampler(bundle.scheduler)} if bundle.scheduler is not None else {})}


def spacings_of(bundle: Bundle) -> tuple[str, ...]:
    return (*SPACINGS, *((MODEL_SPACING,) if bundle.scheduler is not None else ()))


def grid_of(bundle: Bundle, steps: int, spacing: str, shift: float | None = None) -> Tensor:
    """steps + 1 log-SNRs: vidiff's spacing of the model's schedule, shifted by `shift` (None: the
    model's own), or its scheduler's levels."""
    if spacing == MODEL_SPACING:
        return model_grid(bundle.scheduler, steps)
    return sampling_grid(schedule_of(bundle.schedule, bundle.shift if shift is None else shift), steps, spacing)


def device_of(bundle: Bundle) -> torch.device:
    return next(bundle.backbone.parameters()).device


@torch.no_grad()
def sample_video(bundle: Bundle, cond: tuple[Tensor, ...], null: tuple[Tensor, ...], shape: tuple[int, int, int, int],
                 options: SampleOptions | None = None, generator: torch.Generator | None = None, *,
                 known: KnownFrames | None = None, span: GridSpan | None = None,
                 windows: tuple[int, int] | None = None) -> Tensor:
    """Generate (B, C, T, H, W) in the model's space for encoded prompts (cond: Bundle.encode's tuple,
    null: the negative or empty prompt's): videos in [-1, 1], or latents.

    shape is (C, T, H, W). The initial noise is drawn from `generator` where it lives: a CPU generator
    gives the same video on any device and batch layout, a CUDA one draws on its GPU. Pixel models'
    x0 estimates are clipped to [-1, 1] (latents have no known range). The sampler's arithmetic is
    float64 whatever the weights' precision.
    options: unset ones are the model's own (SampleOptions.resolved).
    known: frames the video must contain, put in by its method. Text guidance keeps the frame
    condition in both of its passes: it steers towards the prompt, not away from the frames. History
    guidance (known.history) adds a pass without the frames and steers towards them.
    span: run only part of the grid, or from given noise (e.g. zero-shot video's translated noise).
    windows: (length, overlap) context windows over the frame axis (a video longer than the model's).
    """
    o = (options or SampleOptions()).resolved(bundle)
    span = span or GridSpan()
    x_T, start, stop = span.x_T, span.start, span.stop
    device = device_of(bundle)
    net = bundle.net if windows is None else windowed(bundle.net, *windows)
    mask, history = None, None
    if known is not None:
        frames, mask = known.frames.to(device), known.mask.to(device)
        if known.method == "trained":
            condition = frame_condition(frames, mask)
            if known.history != 1.0:   # the prompt without the given frames (what a text-to-video mask shows)
                history = ((*cond, torch.zeros_like(condition)), known.history)
            cond, null = (*cond, condition), (*null, condition)
    def guide(scale: float):
        if history is None:
            return classifier_free_guidance(net, cond, null, scale, bundle.guidance_interval)
        return compositional_guidance(net, cond, [(null, scale), history], bundle.guidance_interval)

    guided = guide(o.guidance)
    if bundle.low_noise is not None and o.guidance_2 not in (None, o.guidance):   # each expert its own scale
        high, low = guided, guide(o.guidance_2)
        guided = lambda x, log_snr: (low if bundle.low_noise(log_snr) else high)(x, log_snr)   # noqa: E731
    latent = bundle.codec.latent
    denoiser = make_denoiser(guided, bundle.prediction, clip_x0=None if latent else 1.0)
    if known is not None:
        denoiser = (reconstruction_guidance(denoiser, frames, mask, known.weight) if known.method == "guidance"
                    else replacement(denoiser, frames, mask))
    log_snrs = grid_of(bundle, o.steps, o.spacing, o.shift).to(device)
    if x_T is None:      # noise in the network's own input space (a flow model's z at its first level)
        scale = model_input(bundle.prediction, torch.ones(1, dtype=torch.float64), log_snrs[:1].cpu()).item()
        x_T = randn((cond[0].shape[0], *shape), generator, device) / scale
    x_T = x_T.to(device)
    if not 0 <= start < (o.steps if stop is None else stop) <= o.steps:
        raise ValueError(f"cannot sample from grid point {start} to {stop} of {o.steps} steps")
    kwargs = {"eta": o.eta} if o.sampler == "ddim" else {}
    if stop is not None:
        if o.sampler != "ddim":
            raise ValueError("a partial run (stop) needs the DDIM sampler")
        log_snrs, kwargs["partial"] = log_snrs[:stop + 1], stop < o.steps
    x = samplers_of(bundle)[o.sampler](denoiser, x_T, log_snrs[start:], generator=generator, callback=o.callback,
                                       progress=o.progress, **kwargs)
    if stop is not None and stop < o.steps:
        return x
    if known is not None:   # exactly the given frames (stochastic samplers end within noise of them)
        x = torch.where(mask.view(1, 1, -1, 1, 1), frames.to(x.dtype), x)
    return x if latent else x.clamp(-1, 1)
