"""Sampling settings of one model side by side: guidance scale, step spacing, sampler and step count,
each scored by `vidiff eval` on the same held-out prompts and seeds (a benchmark, not a test).

    python benchmarks/sampling_sweep.py [--model default] [--num 40] [--out eval/sweep] [--settings a,b]

A setting whose report already exists under --out is read, not re-run. Writes
docs/results/sampling_sweep.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from results import publish
from vidiff.evaluation.evaluate import evaluate
from vidiff.pipeline import SampleOptions, VideoPipeline

# name -> (sampler, steps, guidance, spacing, guidance interval in sigma or None)
SETTINGS = {
    "ddim25-g2": ("ddim", 25, 2.0, "uniform", None),
    "ddim25-g3": ("ddim", 25, 3.0, "uniform", None),
    "dpm10-g2": ("dpm++2m", 10, 2.0, "karras", None),
    "dpm10-g3": ("dpm++2m", 10, 3.0, "karras", None),
    "dpm15-g2": ("dpm++2m", 15, 2.0, "karras", None),
    "dpm8-g2": ("dpm++2m", 8, 2.0, "karras", None),
    "dpm10-g2-interval": ("dpm++2m", 10, 2.0, "karras", (0.28, 5.42)),
    "dpm10-g3-interval": ("dpm++2m", 10, 3.0, "karras", (0.28, 5.42)),
    "dpm10-g4-interval": ("dpm++2m", 10, 4.0, "karras", (0.28, 5.42)),
}
METRICS = ["viewer_pass", "permanence", "fidelity", "shape_stability", "physics_error_px", "flicker", "fvd_shapes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--num", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("eval/sweep"))
    parser.add_argument("--settings", default="", help="comma-separated names of SETTINGS (default: all)")
    args = parser.parse_args()
    pipe = VideoPipeline.from_pretrained(args.model)
    lines = ["| sampler | steps | guidance | guided at sigma | spacing | " + " | ".join(METRICS) + " |",
             "|---|---:|---:|---|---|" + "---:|" * len(METRICS)]
    names = args.settings.split(",") if args.settings else list(SETTINGS)
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; choose from {', '.join(SETTINGS)}")
    for name in names:
        sampler, steps, guidance, spacing, interval = SETTINGS[name]
        report = args.out / name / "report.json"
        if not report.is_file():
            pipe.bundle.guidance_interval = list(interval or [])
            evaluate(args.out / name, pipe=pipe, num=args.num, options=pipe.options(SampleOptions(steps, guidance, sampler, spacing)))
        summary = json.loads(report.read_text())["summary"]
        where = f"({interval[0]:g}, {interval[1]:g}]" if interval else "all"
        lines.append(f"| {sampler} | {steps} | {guidance:g} | {where} | {spacing} | "
                     + " | ".join(f"{summary[k]:.3f}" for k in METRICS) + " |")
    body = (f"Model `{args.model}`, {args.num} held-out prompts, video i with seed i, every row the same prompts.\n\n"
            + "\n".join(lines) + "\n")
    publish("sampling_sweep", "Sampling settings side by side", body,
            f"python benchmarks/sampling_sweep.py --model {args.model} --num {args.num}"
            + (f" --settings {args.settings}" if args.settings else ""))


if __name__ == "__main__":
    main()
