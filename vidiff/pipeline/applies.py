"""Every option either changes the result or is refused in one line that says when it applies: the
rules for a call's options, in one place. VideoPipeline checks each call against them before any
work, so the CLI, the Python API and the web UI refuse the same things.
"""
from __future__ import annotations

from ..errors import VidiffError
from ..models.bundle import Bundle
from .sampling import FrameConditioning, SampleOptions
from .schedulers import MODEL_SPACING, SCHEDULER


def check_sampling(o: SampleOptions, bundle: Bundle) -> None:
    """Resolved sampling options: each setting applies to the sampler and model it is given with."""
    if o.sampler == SCHEDULER and o.spacing != MODEL_SPACING:
        raise VidiffError(f"the directory's own scheduler (--sampler scheduler) takes its own steps (--spacing "
                          f"model), not --spacing {o.spacing}; pick a vidiff sampler for that spacing")
    if o.eta and o.sampler != "ddim":
        raise VidiffError(f"--eta is DDIM's noise; the {o.sampler} sampler takes none (use --sampler ddim)")
    if o.shift is not None and o.spacing == MODEL_SPACING:
        raise VidiffError("--shift shifts vidiff's spacings; the directory's scheduler (--spacing model) has its "
                          "own (its flow_shift): pick --spacing uniform with a vidiff sampler, e.g. flow-euler")
    if o.guidance_2 is not None and bundle.low_noise is None:
        raise VidiffError("--guidance-2 (guidance_scale_2) is the second expert's guidance; this model has one "
                          "expert (use --guidance)")


def check_call(given: FrameConditioning | None, method: str, frames_given: bool, windows_given: bool,
               windows_used: bool, native: int, negative_given: bool, guided: bool) -> None:
    """A call's other options. given: the conditioning options as the caller gave them (None: none);
    method: the one that will run; native: the model's native frame count."""
    c = given or FrameConditioning()
    set_ = [flag for flag, value in (("--method", c.method), ("--guidance-weight", c.weight),
                                     ("--history-guidance", c.history)) if value is not None]
    if set_ and not frames_given:
        raise VidiffError(f"{', '.join(set_)} set how given frames condition the video; they apply with --image, "
                          "extend and interpolate (FrameConditioning with frames given)")
    if c.weight is not None and method != "guidance":
        raise VidiffError(f"--guidance-weight is reconstruction guidance's weight (--method guidance); the {method} "
                          "method takes none")
    if windows_given and not windows_used:
        raise VidiffError(f"--window-overlap (context_windows) applies when --frames exceeds the model's native "
                          f"{native} frames")
    if negative_given and not guided:
        raise VidiffError("--negative-prompt is what classifier-free guidance steers away from; with no guidance "
                          "(--guidance 1, --few-step) it does nothing")
