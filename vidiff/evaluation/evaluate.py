"""evaluate(): score videos from a folder, a model's samples or the synthetic ground truth, and write
the report (the API behind `vidiff eval`; the benchmarks call `score_clips`)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..config import MAX_GRAVITY, DataConfig, load_config
from ..data import unit_stride
from ..data.objects import track
from ..distributed import current
from ..errors import VidiffError
from ..pipeline import SampleOptions
from . import sources
from .fvd import fvd_shapes, reference_clips
from .law import Law, truth_scores
from .report import score_all, summarize, write_report
from .world import at_world_size

REPORT_FILES = ("report.json", "report.md", "best_worst.png", "metrics.png", "videos")


def score_clips(clips: list[np.ndarray], captions: list[str | None], data: DataConfig | None = None,
                reference: list[np.ndarray] | None = None, progress: bool = False, fvd: bool = True,
                known: int = 0, truths: list | None = None) -> tuple[dict, list[dict]]:
    """(summary, per-video rows). Objects are measured at the world's frame size (`data.size`; the
    default world's without `data`), whatever the clips' size. With the synthetic world's data config,
    physics uses its law (gravity, bounces, collisions) and FVD-shapes compares against its reference
    clips (pass `reference` to reuse them across calls). known: the clips' first `known` frames were
    given (frame-conditioned samples): velocity errors count only the frames after them. truths: each
    clip's ground-truth tracks (continued clips), for the simulator measures (law.truth_scores)."""
    world = data if data is not None else DataConfig()
    rows = score_all([f"{i:04d}" for i in range(len(clips))], clips, captions, Law.of(world), progress=progress,
                     size=world.size, known=known)
    if truths is not None:
        for row, clip, truth in zip(rows, clips, truths):
            row.update(truth_scores(track(at_world_size(clip, world.size))[0], truth, known))
    summary = summarize(rows)
    if fvd and data is not None and data.type == "shapes":
        summary["fvd_shapes"] = fvd_shapes(clips, reference if reference is not None else reference_clips(data))
    return summary, rows


def world_of(config: Path | None = None, gravity: float = 0.0) -> DataConfig:
    """The world videos are scored in: a recipe's data section, or the shipped recipes' world (32x32)
    with this gravity (frame sizes per frame^2)."""
    if config is not None:
        return load_config(config).data
    if not math.isfinite(gravity) or abs(gravity) > MAX_GRAVITY:
        raise VidiffError(f"--gravity must be a finite number from {-MAX_GRAVITY:g} to {MAX_GRAVITY:g} frame sizes per "
                          f"frame^2, got {gravity}")
    world = DataConfig()
    world.shapes.gravity = gravity
    return world


def evaluate(out: Path, videos: Path | None = None, pipe=None, data: DataConfig | None = None, num: int | list[str] = 20,
             options: SampleOptions | None = None, seed: int = 0, overwrite: bool = False,
             world: DataConfig | None = None, known: int = 0) -> dict | None:
    """Score one source and write report.json, report.md, best_worst.png and metrics.png to `out`:
    a folder of videos (`videos`), samples of a pipeline (`pipe`, for held-out prompts of its own
    world, video i with seed + i; or for a list of prompts `num`), or ground-truth clips of `data`. Returns the summary (None on
    ranks other than 0 under torchrun, which only sample their share). An existing `out` is kept unless `overwrite`.
    `options`: how `pipe` samples (default: the model's own, pipe.options()).
    `world`: the world a folder's videos show (its frame size sets the pixels objects are measured in;
    default: the shipped recipes' world, 32x32). known: `pipe` continues the first `known` frames of
    held-out ground-truth clips instead (sources.continued_samples), scored against the simulator too."""
    if sum(x is not None for x in (videos, pipe, data)) != 1:
        raise VidiffError("give exactly one of: a videos folder, a model, or ground truth")
    if not isinstance(num, list) and num < 1:
        raise VidiffError("the number of videos (--num) must be at least 1")
    if out.exists() and not out.is_dir():
        raise VidiffError(f"--out '{out}' is a file; give a folder for the report")
    if any((out / name).exists() for name in REPORT_FILES) and not overwrite:
        raise VidiffError(f"'{out}' already holds a report; pass --overwrite to replace it, or choose another --out")
    dist = current()                   # the caller's process group (distributed.process_group), or one process
    if known and pipe is None:
        raise VidiffError("--known continues ground-truth clips with a model: give --model")
    skipped, world, truths, own_world = [], world if world is not None else DataConfig(), None, False
    if videos is not None:
        names, clips, captions, skipped = sources.load_folder(videos)
        title = f"vidiff eval of {videos}"
    elif data is not None:
        names, clips, captions = sources.ground_truth(data, num)
        title, world = f"vidiff eval of {num} ground-truth clips", data
    else:
        o = options or pipe.options()
        if known:
            names, clips, captions, truths = sources.continued_samples(pipe, num, seed, o, known, out / "videos", dist)
        else:
            names, clips, captions = sources.model_samples(pipe, num, seed, o, out / "videos", dist)
        if not dist.main:
            return None
        title = f"vidiff eval ({o.sampler}, {o.steps} {o.spacing} steps, guidance {o.guidance:g})" + \
            (f", continuing {known} ground-truth frames" if known else "")
        # samples are made at the trained frame rate: compare them with that world's clips (stride 1)
        own_world = pipe.config is not None and pipe.config.data.type == "shapes" and not isinstance(num, list)
        world = unit_stride(pipe.config.data) if own_world else world
    if not dist.main:                     # under torchrun one report, from rank 0
        return None
    # FVD-shapes needs samples of the world's distribution: a model's or the truth's, not any folder
    fvd = data is not None or (pipe is not None and own_world)
    summary, rows = score_clips(clips, captions, world, progress=True, fvd=fvd, known=known,
                                truths=truths)
    for row, name in zip(rows, names):
        row["name"] = name
    if skipped:
        summary["skipped_files"] = len(skipped)
    extra = {k: v for k, v in summary.items() if k in ("fvd_shapes", "skipped_files")}
    write_report(out, rows, clips, title, extra=extra)
    return {**summary, "skipped": skipped}
