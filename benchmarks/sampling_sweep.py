"""Sampling settings of one model side by side: guidance scale, step spacing, sampler and step count,
each scored by `vidiff eval` on the same held-out prompts and seeds (a benchmark, not a test).

    python benchmarks/sampling_sweep.py [--model default] [--num 40] [--out eval/sweep]

A setting whose report already exists under --out is read, not re-run. Writes
docs/results/sampling_sweep.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from results import publish
from vidiff.evaluation.evaluate import evaluate
from vidiff.pipeline import VideoPipeline

# name -> (sampler, steps, guidance, spacing)
SETTINGS = {
    "default": ("ddim", 25, 3.0, "uniform"),
    "g2": ("ddim", 25, 2.0, "uniform"),
    "g45": ("ddim", 25, 4.5, "uniform"),
    "karras": ("ddim", 25, 3.0, "karras"),
    "logsnr": ("ddim", 25, 3.0, "log_snr"),
    "ddim12": ("ddim", 12, 3.0, "uniform"),
    "dpm12": ("dpm++2m", 12, 3.0, "uniform"),
}
METRICS = ["viewer_pass", "permanence", "fidelity", "shape_stability", "physics_error_px", "flicker", "fvd_shapes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--num", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("eval/sweep"))
    args = parser.parse_args()
    pipe = VideoPipeline.from_pretrained(args.model)
    lines = ["| sampler | steps | guidance | spacing | " + " | ".join(METRICS) + " |",
             "|---|---:|---:|---|" + "---:|" * len(METRICS)]
    for name, (sampler, steps, guidance, spacing) in SETTINGS.items():
        report = args.out / name / "report.json"
        if not report.is_file():
            evaluate(args.out / name, pipe=pipe, num=args.num, steps=steps, guidance=guidance, sampler=sampler,
                     spacing=spacing)
        summary = json.loads(report.read_text())["summary"]
        lines.append(f"| {sampler} | {steps} | {guidance:g} | {spacing} | "
                     + " | ".join(f"{summary[k]:.3f}" for k in METRICS) + " |")
    body = (f"Model `{args.model}`, {args.num} held-out prompts, video i with seed i, every row the same prompts.\n\n"
            + "\n".join(lines) + "\n")
    publish("sampling_sweep", "Sampling settings side by side", body,
            f"python benchmarks/sampling_sweep.py --model {args.model} --num {args.num}")


if __name__ == "__main__":
    main()
