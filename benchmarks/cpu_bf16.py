"""bf16 against fp32 for the embedded model on the CPU (a benchmark, not a test; issue 34).

    python benchmarks/cpu_bf16.py [--num 8] [--threads 2]

The same held-out prompts and seeds, sampled with `torch_dtype` fp32, bf16 and fp16 on the CPU: seconds
per clip (after a warm-up), mean |difference| to the fp32 frames in 8-bit levels, vidiff eval's
viewer pass, and a sheet (docs/results/cpu_bf16.png: every second frame, one row per dtype) to look at.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from results import RESULTS, publish, sample_sheet
from vidiff.data import ShapesDataset, unit_stride
from vidiff.data.splits import HELD_OUT
from vidiff.evaluation.world import score_video
from vidiff.pipeline import SampleOptions, VideoPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipes = {d: VideoPipeline.from_pretrained(None, device="cpu", torch_dtype=d) for d in ("fp32", "bf16", "fp16")}
    data = ShapesDataset(unit_stride(pipes["fp32"].config.data))
    prompts = [data[HELD_OUT + i]["caption"] for i in range(args.num)]
    videos, rows, sheet = {}, [], []
    for name, pipe in pipes.items():
        pipe(prompts[0], generator=torch.Generator().manual_seed(0), sampling=SampleOptions(progress=False))  # warm-up
        start = time.perf_counter()
        videos[name] = [pipe(p, generator=torch.Generator().manual_seed(i), sampling=SampleOptions(progress=False)).pixels[0]
                        for i, p in enumerate(prompts)]
        seconds = (time.perf_counter() - start) / args.num
        diff = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(videos[name], videos["fp32"])])
        viewer = np.mean([score_video(v, p)["viewer_pass"] for v, p in zip(videos[name], prompts)])
        rows.append(f"| {name} | {seconds:.2f} | {diff:.2f} | {viewer:.3f} |")
    for i in range(min(4, args.num)):
        for name in pipes:
            sheet.append((f"{name}: {prompts[i]}", np.concatenate(list(videos[name][i][::2]), 1)))
    sample_sheet(sheet, RESULTS / "cpu_bf16.png")
    body = "\n".join([f"The embedded model, {args.num} held-out prompts (seed i for prompt i), its default sampler, "
                      f"{args.threads} CPU threads.", "", "| dtype | s per clip | mean abs difference to fp32 (8-bit levels) "
                      "| viewer pass |", "|---|---:|---:|---:|", *rows, "", "![fp32, bf16, fp16](cpu_bf16.png)"])
    publish("cpu_bf16", "bf16 and fp16 on the CPU", body, "python benchmarks/cpu_bf16.py --num "
            f"{args.num} --threads {args.threads}")


if __name__ == "__main__":
    main()
