"""`vidiff eval` scores of the embedded model per sampler and step count (a benchmark, not a test).

    python benchmarks/quality_vs_steps.py [--num 10] [--samplers ddpm,ddim,dpm++2m,heun]
                                          [--steps 5,10,20,50,250] [--out eval/quality_vs_steps]

Every cell generates the same held-out prompts from the same initial noise (seeded batches of 4), so
cells differ only by the sampler and its step count. Finished cells are cached in <out>/results.json,
so an interrupted run continues where it stopped. Prints one markdown table, ground truth last.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from results import publish
from vidiff.data import ShapesDataset, unit_stride
from vidiff.data.splits import HELD_OUT
from vidiff.evaluation.evaluate import score_clips
from vidiff.evaluation.fvd import reference_clips
from vidiff.evaluation.report import HIGHER_IS_BETTER
from vidiff.evaluation.sources import ground_truth
from vidiff.pipeline import SampleOptions, VideoPipeline

CHUNK = 4
METRICS = ("viewer_pass", "permanence", "fidelity", "shape_stability", "size_stability", "physics_error_px",
           "max_jump_px", "dynamic_degree", "warping_error", "flicker", "fvd_shapes")


def evaluate(clips, captions, data, reference) -> dict:
    """`vidiff eval`'s summary of these clips, FVD-shapes against `reference`."""
    return score_clips(clips, captions, data, reference)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=10)
    parser.add_argument("--samplers", default="ddpm,ddim,dpm++2m,heun")
    parser.add_argument("--steps", default="5,10,20,50,250")
    parser.add_argument("--out", type=Path, default=Path("eval/quality_vs_steps"))
    parser.add_argument("--guidance", type=float, default=None, help="default: the model's own")
    parser.add_argument("--spacing", default=None, help="step spacing (default: the model's own)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache_path = args.out / "results.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}

    pipe = VideoPipeline.from_pretrained()
    own = pipe.options(SampleOptions(guidance=args.guidance, spacing=args.spacing))
    guidance, spacing = own.guidance, own.spacing
    data = unit_stride(pipe.config.data)
    captions = [ShapesDataset(data)[HELD_OUT + i]["caption"] for i in range(args.num)]
    reference = reference_clips(data)
    for sampler in args.samplers.split(","):
        for steps in map(int, args.steps.split(",")):
            key = f"{sampler} {steps}"
            if key in cache and cache[key]["videos"] == args.num:
                continue
            start = time.perf_counter()
            clips = []
            for chunk in range(0, args.num, CHUNK):   # small batches stay in cache: faster on CPUs
                clips += list(pipe(captions[chunk:chunk + CHUNK], generator=torch.Generator().manual_seed(chunk),
                                   sampling=SampleOptions(steps, guidance, sampler, spacing, progress=False)).pixels)
            seconds = (time.perf_counter() - start) / args.num
            cache[key] = {**evaluate(clips, captions, data, reference), "seconds_per_clip": seconds}
            cache_path.write_text(json.dumps(cache, indent=1))
            print(f"{key}: {seconds:.1f} s/clip", flush=True)
    if "ground truth" not in cache or cache["ground truth"]["videos"] != args.num:
        _, clips, truth_captions = ground_truth(data, args.num)
        cache["ground truth"] = evaluate(clips, truth_captions, data, reference)
        cache_path.write_text(json.dumps(cache, indent=1))
    body = (f"The embedded model, {args.num} held-out prompts, guidance {guidance:g}, {spacing} step spacing; every "
            "cell the same prompts and initial noise. s/clip: sampling and decoding only, batches of 4.\n\n"
            + table({k: v for k, v in cache.items() if v["videos"] == args.num}) + "\n")
    publish("quality_vs_steps", "Embedded model: quality against sampler and steps", body,
            f"python benchmarks/quality_vs_steps.py --num {args.num} --samplers {args.samplers} --steps {args.steps}"
            + (f" --guidance {args.guidance:g}" if args.guidance is not None else "")
            + (f" --spacing {args.spacing}" if args.spacing else ""))


def table(cells: dict[str, dict]) -> str:
    """One row per sampler and step count, one column per metric (arrow: which way is better)."""
    metrics = [m for m in METRICS if any(m in c for c in cells.values())]
    lines = ["| sampler | steps | s/clip | " + " | ".join(f"{m} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in metrics) + " |",
             "|---|---:|---:|" + "---:|" * len(metrics)]
    for key, cell in cells.items():
        sampler, _, steps = key.rpartition(" ") if key != "ground truth" else (key, "", "")
        seconds = f"{cell['seconds_per_clip']:.1f}" if "seconds_per_clip" in cell else ""
        lines.append(f"| {sampler} | {steps} | {seconds} | " + " | ".join(f"{cell.get(m, float('nan')):.3g}" for m in metrics) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
