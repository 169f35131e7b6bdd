"""Frame conditioning measured: image-to-video, extension far past the trained length, and frame
interpolation, for each conditioning method a model has (a benchmark, not a test).

    python benchmarks/conditioning.py [--model default] [--num 12] [--steps N] [--out eval/conditioning]

Rows: `trained` (a masked-frame model's own input; only for such models), `guidance w_r=...` (VDM
reconstruction guidance), `replacement`, and the ground truth or simple baselines. Every row uses
the same held-out clips, captions and seeds. Writes docs/results/conditioning.md and the drift plot
docs/results/conditioning_drift.png; samples go to --out.

- image-to-video: frame 0 of a held-out clip and its caption. `first step / median step`: the object's
  move from the given frame to frame 1 over its median per-frame move (1 = no seam); `static`: share
  of clips whose objects move under 0.3 px/frame on average (the data moves 1-2.2 px/frame).
- extension: the first 8 frames of a held-out clip, continued to `--long` frames (8x the trained 16
  by default; guidance and replacement to 4x, they cost more). `trained hierarchical s=k` (a model
  trained with frame strides): keyframes every k frames first, then interpolation between them. Per 16-frame segment: permanence,
  fidelity, physics error; `seam / median step`: object moves across window seams over the median
  move inside windows; `last/first permanence`; `moving at end`: share of clips whose objects still
  move over 0.3 px/frame in the last segment.
- interpolation x4: frames 0, 4, 8, 12 of a held-out clip in, 13 out. Position error of each object
  on the new frames against the true positions (px, at 32x32), separately for stretches where the
  object bounces between the two keyframes; `ghosting`: share of (new frame, object) pairs where the
  object is not one full-size blob of its colour (missing, split, or faded as in a cross-fade).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from results import RESULTS, publish  # noqa: E402
from vidiff.data import ShapesDataset, unit_stride  # noqa: E402
from vidiff.data.io import save_video, to_uint8  # noqa: E402
from vidiff.data.splits import HELD_OUT  # noqa: E402
from vidiff.evaluation.evaluate import score_clips  # noqa: E402
from vidiff.data.objects import track  # noqa: E402
from vidiff.pipeline import FrameConditioning, SampleOptions, VideoPipeline  # noqa: E402
from vidiff.world import COLOURS  # noqa: E402

MOVING = 0.3        # px/frame: below this on average an object is called static
SEGMENT = 16


def positions(video: np.ndarray, colours: list[str]) -> dict[str, np.ndarray]:
    """(T, 2) centroid per colour, NaN where the object is not found."""
    tracks, _ = track(video, colours)
    out = {}
    for colour in colours:
        tr = tracks.get(colour)
        dets = tr.detections if tr else [None] * len(video)
        out[colour] = np.array([d.centroid if d is not None else [np.nan, np.nan] for d in dets])
    return out


def steps_of(pos: dict[str, np.ndarray]) -> np.ndarray:
    """(T-1,) mean per-frame move over the objects (NaN where none is seen in both frames)."""
    moves = np.stack([np.linalg.norm(p[1:] - p[:-1], axis=1) for p in pos.values()])
    with np.errstate(all="ignore"):
        return np.nanmean(moves, axis=0) if not np.isnan(moves).all() else np.full(moves.shape[1], np.nan)


def colours_of(item) -> list[str]:
    return [t.colour for t in item["tracks"]]


def image_to_video(pipe, items, methods, steps, seed, out: Path) -> dict:
    rows = {}
    data = unit_stride(pipe.config.data)
    for name, kwargs in methods:
        clips, captions, first, static = [], [], [], []
        for i, it in enumerate(items):
            given = to_uint8(it["video"])
            g = torch.Generator().manual_seed(seed + i)
            if kwargs is None:         # plain text-to-video, for comparison
                video = pipe(it["caption"], generator=g, sampling=SampleOptions(steps, progress=False)).pixels[0]
            else:
                video = pipe(it["caption"], image=given[0], generator=g, sampling=SampleOptions(steps, progress=False),
                             **kwargs).pixels[0]
            clips.append(video), captions.append(it["caption"])
            step = steps_of(positions(video, colours_of(it)))
            static.append(not np.nanmean(step) > MOVING)
            if kwargs is not None:
                first.append(step[0] / np.nanmedian(step[1:]) if np.nanmedian(step[1:]) > 0 else np.nan)
        summary, _ = score_clips(clips, captions, data, fvd=False)
        rows[name] = {"viewer_pass": summary["viewer_pass"], "permanence": summary["permanence"],
                      "fidelity": summary["fidelity"], "physics_error_px": summary["physics_error_px"],
                      "first step / median step": float(np.nanmedian(first)) if first else float("nan"),
                      "static": float(np.mean(static))}
        save_video(np.concatenate(clips[:4], axis=2), out / f"i2v_{name.split()[0]}.png", overwrite=True)
    return rows


def segments(video, caption, data) -> list[dict]:
    return [score_clips([video[s:s + SEGMENT]], [caption], data, fvd=False)[0]
            for s in range(0, len(video) - SEGMENT + 1, SEGMENT)]


def seam_frames(window: int, have: int, length: int, stride: int | None) -> list[int]:
    """First frame after each seam between windows. Windows: every window - context frames from
    `have`. Hierarchical: where one interpolation window hands over to the next (at a shared keyframe,
    every (keys per window - 1) * stride frames from the last given frame), and the given frames' end."""
    if stride is None:
        return list(range(have, length, window - max(2, window // 4)))
    span = ((window - 1) // stride) * stride
    return [have] + [s + 1 for s in range(have - 1 + span, length - 1, span)]


def extension(pipe, items, long_items, methods, steps, seed, have: int) -> tuple[dict, dict]:
    rows, curves = {}, {}
    data = unit_stride(pipe.config.data)
    for name, kwargs, length in methods:
        per_segment, seams, ratios, moving = [], [], [], []
        for i, (it, long) in enumerate(zip(items, long_items)):
            if kwargs is None:     # the ground truth, simulated to the same length
                video = to_uint8(long["video"])[:length]
                starts = []
            else:
                g = torch.Generator().manual_seed(seed + i)
                video = pipe.extend(to_uint8(it["video"])[:have], it["caption"], num_frames=length, generator=g,
                                    sampling=SampleOptions(steps, progress=False), **kwargs).pixels[0]
                starts = seam_frames(pipe.window, have, length, kwargs.get("stride"))
            per_segment.append(segments(video, it["caption"], data))
            step = steps_of(positions(video, colours_of(it)))
            seam = [step[s - 1] for s in starts if s - 1 < len(step)]
            inside = np.delete(step, [s - 1 for s in starts if s - 1 < len(step)])
            if seam:
                ratios.append(np.nanmean(seam) / np.nanmedian(inside))
            moving.append(np.nanmean(step[-SEGMENT:]) > MOVING)
        n = min(len(s) for s in per_segment)
        curve = {m: [float(np.nanmean([s[k].get(m, np.nan) for s in per_segment])) for k in range(n)]
                 for m in ("permanence", "fidelity", "physics_error_px")}   # physics: none where no object was seen
        curves[name] = curve
        slope = np.polyfit(np.arange(n), curve["permanence"], 1)[0] if n > 1 else float("nan")
        rows[name] = {"frames": length, "first segment permanence": curve["permanence"][0],
                      "last segment permanence": curve["permanence"][-1],
                      "last/first permanence": curve["permanence"][-1] / max(curve["permanence"][0], 1e-9),
                      "permanence slope / segment": float(slope),
                      "last segment physics px": curve["physics_error_px"][-1],
                      "seam / median step": float(np.nanmean(ratios)) if ratios else float("nan"),
                      "moving at end": float(np.mean(moving))}
    return rows, curves


def interpolation(pipe, items, methods, steps, seed, factor: int = 4, keys: int = 4) -> dict:
    rows = {}
    for name, kwargs in methods:
        errors, bounce_errors, ghosts = [], [], []
        for i, it in enumerate(items):
            truth = to_uint8(it["video"])[:(keys - 1) * factor + 1]
            given = truth[::factor]
            if name == "pixel blend":
                a = np.arange(factor)[:, None, None, None] / factor
                video = np.concatenate([((1 - a) * given[k] + a * given[k + 1]).round().astype(np.uint8)
                                        for k in range(keys - 1)] + [given[-1:]])
            elif name == "nearest frame":
                video = given[np.round(np.arange(len(truth)) / factor).astype(int)]
            else:
                g = torch.Generator().manual_seed(seed + i)
                video = pipe.interpolate(given, factor=factor, prompt=it["caption"], generator=g,
                                         sampling=SampleOptions(steps, progress=False), **kwargs).pixels[0]
            found = positions(video, colours_of(it))
            tracks, _ = track(video, colours_of(it))
            for tr in it["tracks"]:
                true = tr.positions[:len(truth)]
                flips = np.sign(tr.velocities[:len(truth)])
                for t in range(len(truth)):
                    if t % factor == 0:
                        continue
                    k0, k1 = (t // factor) * factor, (t // factor + 1) * factor
                    bounced = bool((flips[k0] != flips[min(k1, len(flips) - 1)]).any())
                    p = found[tr.colour][t]
                    err = float(np.linalg.norm(p - true[t])) if not np.isnan(p).any() else np.nan
                    (bounce_errors if bounced else errors).append(err)
                    det = tracks[tr.colour].detections[t] if tr.colour in tracks else None
                    ref = tracks[tr.colour].detections[k0] if tr.colour in tracks else None
                    ghosts.append(det is None or ref is None or not 0.6 < det.area / max(ref.area, 1e-9) < 1.5)
        miss = lambda e: float(np.mean(np.isnan(e))) if e else float("nan")
        rows[name] = {"position error px": float(np.nanmean(errors)) if errors else float("nan"),
                      "across a bounce px": float(np.nanmean(bounce_errors)) if bounce_errors else float("nan"),
                      "not found": miss(errors + bounce_errors), "ghosting": float(np.mean(ghosts))}
    return rows


def table(rows: dict) -> str:
    cols = list(next(iter(rows.values())))
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["| | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [f"| {name} | " + " | ".join(fmt(r[c]) for c in cols) + " |" for name, r in rows.items()]
    return "\n".join(lines)


def drift_plot(curves: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, metric in zip(axes, ("permanence", "fidelity", "physics_error_px")):
        for name, curve in curves.items():
            ax.plot(np.arange(1, len(curve[metric]) + 1) * SEGMENT, curve[metric], marker="o", label=name)
        ax.set_xlabel("frame (end of 16-frame segment)"), ax.set_title(metric)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--num", type=int, default=12, help="held-out clips per measurement")
    parser.add_argument("--num-long", type=int, default=6, help="clips for the extension rows")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own)")
    parser.add_argument("--long", type=int, default=128, help="extension length (8x the trained 16)")
    parser.add_argument("--weights", default="1,2,4", help="w_r of the reconstruction-guidance rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("eval/conditioning"))
    parser.add_argument("--name", default="conditioning")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    args.out.mkdir(parents=True, exist_ok=True)
    pipe = VideoPipeline.from_pretrained(args.model)
    own = pipe.options(SampleOptions(args.steps))      # every row samples with the model's own
    steps, guidance, sampler, spacing = own.steps, own.guidance, own.sampler, own.spacing
    data = unit_stride(pipe.config.data)
    dataset = ShapesDataset(data)
    items = [dataset[HELD_OUT + i] for i in range(args.num)]
    long_data = ShapesDataset(dataclasses.replace(data, frames=args.long))
    long_items = [long_data[HELD_OUT + i] for i in range(args.num_long)]
    weights = [float(w) for w in args.weights.split(",")]
    methods = ([("trained", {"conditioning": FrameConditioning("trained")})] if pipe.model.frame_conditioning else []) + \
        [(f"guidance w_r={w:g}", {"conditioning": FrameConditioning("guidance", w)}) for w in weights] + \
        [("replacement", {"conditioning": FrameConditioning("replacement")})]
    start = time.time()
    cache_path = args.out / "sections.json"      # finished sections, so a rerun continues where one stopped
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}

    def section(name, fn):
        if name not in cache:
            cache[name] = fn()
            cache_path.write_text(json.dumps(cache, indent=1))
        return cache[name]
    i2v = section("i2v", lambda: image_to_video(pipe, items, methods + [("text only (no image)", None)], steps,
                                                 args.seed, args.out))
    ext_methods = [(n, k, args.long if n == "trained" else min(args.long, 4 * pipe.window))
                   for n, k in methods if n in ("trained", "replacement") or n == f"guidance w_r={weights[len(weights) // 2]:g}"]
    ext_methods += [(f"trained hierarchical s={s}", {"conditioning": FrameConditioning("trained"), "mode": "hierarchical", "stride": s}, args.long)
                    for s in pipe.trained_strides() if s > 1 and pipe.model.frame_conditioning]
    ext, curves = section("extension", lambda: extension(pipe, items[:args.num_long], long_items,
                                                          ext_methods + [("ground truth", None, args.long)],
                                                          steps, args.seed, have=8))
    interp = section("interpolation", lambda: interpolation(pipe, items, methods + [("pixel blend", None),
                                                                                   ("nearest frame", None)],
                                                            steps, args.seed))
    drift_plot(curves, RESULTS / f"{args.name}_drift.png")
    (args.out / "results.json").write_text(json.dumps({"i2v": i2v, "extension": ext, "interpolation": interp,
                                                       "curves": curves}, indent=2))
    body = (f"Model: `{args.model}`, {sampler} with {steps} {spacing} steps, guidance {guidance:g} (the model's "
            f"sampling defaults unless --steps), "
            f"{args.num} held-out clips "
            f"({args.num_long} for extension); {time.time() - start:.0f} s in all.\n\n"
            f"## Image-to-video\n\n{table(i2v)}\n\n## Extension from 8 frames\n\n{table(ext)}\n\n"
            f"![drift]({args.name}_drift.png)\n\n## Interpolation x4 (4 frames in, 13 out)\n\n{table(interp)}\n")
    publish(args.name, "Frame conditioning: image-to-video, extension, interpolation", body,
            f"python benchmarks/conditioning.py --model {args.model} --num {args.num} --num-long {args.num_long} "
            f"--long {args.long}" + (f" --steps {args.steps}" if args.steps else ""))


if __name__ == "__main__":
    main()
