"""diffusers' call arguments, mapped onto vidiff's option groups in one place, so
`pipe(prompt, num_inference_steps=4, guidance_scale=5.0, output_type="np")` works on every model and
the pipeline's own signatures stay short.

guidance_scale keeps diffusers' meaning: 1 or less is no classifier-free guidance. vidiff's own
SampleOptions.guidance keeps its meaning: 1 is none, 0 the unconditional model, between them a blend.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..errors import VidiffError
from .checks import check_generator, number, sampling_group, shown, whole
from .context_windows import ContextWindows
from .output import OUTPUT_TYPES
from .sampling import SampleOptions

# diffusers names vidiff does not take, and what to use instead
INSTEAD = {"latents": "a seeded generator= (noise is drawn from it)", "prompt_embeds": "the prompt text",
           "negative_prompt_embeds": "negative_prompt=", "callback_on_step_end": "sampling=SampleOptions(callback=...)",
           "callback": "sampling=SampleOptions(callback=...)", "eta": "sampling=SampleOptions(eta=...)",
           "return_dict": "the returned VideoPipelineOutput", "max_sequence_length": "a shorter prompt",
           "attention_kwargs": "load_lora(path, scale)", "cross_attention_kwargs": "load_lora(path, scale)",
           "num_images_per_prompt": "num_videos_per_prompt=",
           "timesteps": "sampling=SampleOptions(spacing=...)", "sigmas": "sampling=SampleOptions(spacing=...)"}
NAMES = ("negative_prompt", "num_frames", "height", "width", "generator", "num_videos_per_prompt", "output_type",
         "num_inference_steps", "guidance_scale", "guidance_scale_2", "stride", "context_windows")


@dataclass
class Request:
    """One call's settings besides the prompt and the option groups (None: the model's own)."""
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    generator: torch.Generator | None = None
    negative_prompt: str | None = None
    videos_per_prompt: int = 1
    output_type: str = "np"
    stride: int = 1
    windows: ContextWindows | None = None
    sampling: SampleOptions | None = None


def request(call: dict, sampling: SampleOptions | None, allowed: tuple[str, ...] = NAMES) -> Request:
    """The Request of a call's keyword arguments (diffusers' names and vidiff's), each checked."""
    for name in call:
        if name not in allowed:
            hint = f"; use {INSTEAD[name]}" if name in INSTEAD else f"; it takes: {', '.join(allowed)}"
            raise VidiffError(f"unknown argument '{name}'{hint}")
    o = sampling_group(sampling)
    for name, field in (("num_inference_steps", "steps"), ("guidance_scale", "guidance"),
                        ("guidance_scale_2", "guidance_2")):
        if call.get(name) is not None and getattr(o, field) is not None:
            raise VidiffError(f"{name} and sampling=SampleOptions({field}=...) set the same thing; give one")
    if call.get("num_inference_steps") is not None:
        o = replace(o, steps=whole(call["num_inference_steps"], "num_inference_steps (--steps)", 1, 10_000))
    if call.get("guidance_scale") is not None:     # diffusers: CFG only above 1
        o = replace(o, guidance=max(1.0, number(call["guidance_scale"], "guidance_scale (--guidance)", -1e9, 1e9)))
    if call.get("guidance_scale_2") is not None:
        o = replace(o, guidance_2=max(1.0, number(call["guidance_scale_2"], "guidance_scale_2 (--guidance-2)", -1e9, 1e9)))
    negative = call.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise VidiffError(f"negative_prompt must be a string, got {shown(negative)}")
    output = call.get("output_type", "np")
    if output not in OUTPUT_TYPES:
        raise VidiffError(f"unknown output_type {shown(output)}; choose one of: {', '.join(OUTPUT_TYPES)}")
    windows = call.get("context_windows")
    if windows is not None and not isinstance(windows, ContextWindows):
        raise VidiffError(f"context_windows must be a vidiff.pipeline.ContextWindows, got {shown(windows)}")
    sizes = {k: None if call.get(k) is None else whole(call[k], f"{k} (--{'frames' if k == 'num_frames' else 'size'})")
             for k in ("num_frames", "height", "width")}
    return Request(**sizes, generator=check_generator(call.get("generator")), negative_prompt=negative,
                   videos_per_prompt=whole(call.get("num_videos_per_prompt", 1), "num_videos_per_prompt", 1, 64),
                   output_type=output, stride=whole(call.get("stride", 1), "the frame stride (--stride)"),
                   windows=windows, sampling=o)
