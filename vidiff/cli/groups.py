"""Option groups shared by the commands: each is a dataclass whose fields are typer options, and
`@grouped` puts its fields into a command's signature and hands the command one object. A command
lists what is its own; sampling, output, model loading and frame conditioning are defined once here."""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional, get_type_hints

import typer

from ..config import DISPLAY_SCALE, MAX_SEED, RECONSTRUCTION_WEIGHT
from ..errors import VidiffError

LARGE_FRAMES = 256  # frames at least this high are written as they are (--scale's auto default)
MAX_SCALE = 64     # enlargement of the written frames (--scale 1000 asked for 45.8 GiB); the pipeline caps the pixels


def grouped(**groups: type):
    """Decorator: parameter `name` of the command becomes the fields of `groups[name]` on the command
    line, and the command receives them as one `groups[name]` object."""
    def wrap(command):
        signature = inspect.signature(command)
        hints = get_type_hints(command)
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
               if p.name not in groups]
        added = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                   annotation=get_type_hints(cls)[f.name])
                 for cls in groups.values() for f in fields(cls)]

        @functools.wraps(command)
        def run(**kwargs):
            for name, cls in groups.items():
                kwargs[name] = cls(**{f.name: kwargs.pop(f.name) for f in fields(cls)})
            return command(**kwargs)
        run.__signature__ = signature.replace(parameters=own + added)
        run.__annotations__ = {p.name: p.annotation for p in own + added}
        del run.__wrapped__           # typer reads the new signature, not the command's
        return run
    return wrap


def _seed(value: int) -> int:
    if not 0 <= value <= MAX_SEED:
        raise VidiffError(f"--seed must be 0 to {MAX_SEED}, got {value}")
    return value


@dataclass
class Sampling:
    steps: Optional[int] = typer.Option(None, help="sampling steps (default: the model's diffusion.sampling_steps; "
                                                   "a distilled model's own count)")
    guidance: Optional[float] = typer.Option(None, help="classifier-free guidance scale (default: the model's "
                                                        "diffusion.guidance; 1 = none, a distilled model's default)")
    guidance_2: Optional[float] = typer.Option(None, help="a two-expert model's (Wan 2.2 A14B) guidance for its "
                                                          "low-noise expert (default: its own, else --guidance)")
    sampler: Optional[str] = typer.Option(None, help="ddim | ddpm | dpm++2m | euler | heun | flow-euler | scheduler "
                                                     "(a diffusers-format directory's own; default: the model's)")
    spacing: Optional[str] = typer.Option(None, help="where the steps fall: uniform (in time) | karras | log_snr | "
                                                     "model (the directory's scheduler's levels; default: the model's)")
    eta: float = typer.Option(0.0, help="DDIM noise (0 deterministic, 1 DDPM-like)")
    shift: Optional[float] = typer.Option(None, help="time shift of the schedule for vidiff's spacings (higher: more "
                                                     "steps at high noise; default: the model's)")
    few_step: bool = typer.Option(False, "--few-step", help="the recipe of step-distilled LoRAs (lightx2v CausVid, "
                                                            "Self-Forcing, Lightning): 4 flow-euler steps at timesteps "
                                                            "1000/750/500/250 with shift 5, no guidance; --steps, "
                                                            "--shift, ... override it")
    seed: int = typer.Option(0, help="random seed (several videos: video i uses seed + i)", callback=_seed)

    def options(self, progress: bool = True):
        """The sampling options, their names checked before any model loads (the model checks the rest)."""
        from ..diffusion import SAMPLERS, SPACINGS
        from ..pipeline import SampleOptions
        for what, name, names in (("sampler (--sampler)", self.sampler, (*SAMPLERS, "scheduler")),
                                  ("spacing (--spacing)", self.spacing, (*SPACINGS, "model"))):
            if name is not None and name not in names:
                raise VidiffError(f"unknown {what} '{name}'; choose one of: {', '.join(names)}")
        given = dict(steps=self.steps, guidance=self.guidance, sampler=self.sampler, spacing=self.spacing,
                     eta=self.eta, progress=progress, guidance_2=self.guidance_2, shift=self.shift)
        return SampleOptions.few_step(**given) if self.few_step else SampleOptions(**given)

    def generator(self):
        import torch
        return torch.Generator().manual_seed(self.seed)


@dataclass
class Conditioning:
    method: Optional[str] = typer.Option(None, help="how given frames condition the video: trained (a masked-frame "
                                                    "model) | guidance (VDM reconstruction guidance, any model) | "
                                                    "replacement; default: trained if the model has it, else guidance")
    guidance_weight: Optional[float] = typer.Option(None, help="w_r of reconstruction guidance (--method guidance; "
                                                               f"default {RECONSTRUCTION_WEIGHT})")
    history_guidance: Optional[float] = typer.Option(None, help="history guidance scale (--method trained): also steer "
                                                                "towards what the given frames imply; 1: none; "
                                                                "default: the model's diffusion.history_guidance")

    def conditioning(self):
        from ..pipeline import FrameConditioning
        return FrameConditioning(self.method, self.guidance_weight, self.history_guidance)


@dataclass
class Output:
    out: Path = typer.Option(Path("out.mp4"), help="output .mp4, .gif or .png (contact sheet)")
    fps: Optional[int] = typer.Option(None, help="frames per second of the file (default: the model's own; 8 for "
                                                 "vidiff's, 16 for Wan)")
    scale: Optional[int] = typer.Option(None, help=f"enlarge frames this many times (nearest neighbour; default: "
                                                   f"{DISPLAY_SCALE} for frames under {LARGE_FRAMES} px high, else 1)")
    sheet: bool = typer.Option(False, help="also write a PNG contact sheet beside the video")
    overwrite: bool = typer.Option(False, help="replace existing output files")

    def paths(self) -> list[Path]:
        """The files the command writes, checked before minutes of sampling, not after."""
        from ..data.io import check_writable
        outputs = [self.out] + ([self.out.with_suffix(".png")] if self.sheet and self.out.suffix != ".png" else [])
        for path in outputs:
            check_writable(path, self.overwrite)
        if not 1 <= (self.scale or 1) <= MAX_SCALE or not 1 <= (self.fps or 8) <= 240:
            raise VidiffError(f"--scale must be 1 to {MAX_SCALE} and --fps 1 to 240, got --scale {self.scale} "
                              f"--fps {self.fps}")
        return outputs

    def save(self, video, paths: list[Path]) -> None:
        frames = video.pixels
        scale = self.scale or (1 if frames.shape[2] >= LARGE_FRAMES else DISPLAY_SCALE)
        for path in paths:
            if frames.shape[1] > 64:       # a long video takes a while to encode: say so before, not only after
                typer.echo(f"writing {path} ({frames.shape[1]} frames)...")
            video.save(path, fps=self.fps, scale=scale, overwrite=self.overwrite)
            typer.echo(f"wrote {path}")


@dataclass
class Model:
    model: Optional[Path] = typer.Option(None, help="checkpoint or run folder, or a diffusers-format model directory "
                                                    "(Wan 2.1); default: embedded model")
    offload: str = typer.Option("none", help="none | model: each component on the GPU only while it runs | text: also "
                                             "run the text encoder on the CPU (models of separate components: "
                                             "diffusers-format)")
    vae_tiling: bool = typer.Option(False, help="decode in tiles: less memory for large frames (diffusers-format models)")
    dtype: str = typer.Option("fp32", help="weights and activations: fp32 | bf16 | fp16 (bf16 halves memory, is faster "
                                           "on a GPU and on this CPU too; fp16 is ~20x slower on a CPU: "
                                           "docs/results/cpu_bf16.md)")
    compile: bool = typer.Option(False, "--compile", help="torch.compile the backbone: the first call compiles "
                                                          "(minutes on a CPU), later ones are faster (a GPU)")

    def load(self, device=None):
        from ..pipeline import VideoPipeline
        return VideoPipeline.from_pretrained(self.model, device=device, torch_dtype=self.dtype, compile=self.compile,
                                             offload=self.offload, vae_tiling=self.vae_tiling)


@dataclass
class Run:
    config: Optional[Path] = typer.Option(None, help="YAML recipe, e.g. one of configs/")
    out: Path = typer.Option(..., help="run folder: checkpoints, samples (a VAE: reconstructions), loss.png")
    resume: bool = typer.Option(False, help="continue the run in --out from its latest checkpoint")
    steps: Optional[int] = typer.Option(None, help="override train.steps")
    minutes: Optional[float] = typer.Option(None, help="override train.time_limit_minutes: stop after this much "
                                                       "training time in all (0 = no limit)")
    progress: bool = typer.Option(True, help="show a progress bar")
