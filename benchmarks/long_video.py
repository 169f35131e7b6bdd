"""Long video two ways on the same model, prompts and seeds (a benchmark, not a test):

    python benchmarks/long_video.py [--model default] [--num 8] [--frames 64]

- `context windows`: the whole clip in one pass; every step runs the model on overlapping windows of
  its native length and blends them (pipeline/context_windows.py).
- `extension`: a native-length clip, then `VideoPipeline.extend` window by window, each conditioned on
  the last frames made so far.
Scored by `vidiff eval`'s metrics (world-aware for the embedded model), per clip and over the
last native-length window, where drift shows. Writes docs/results/long_video.md and a contact sheet
docs/results/long_video.png (first 4 prompts; each row: windows, then extension).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

from results import RESULTS, publish  # noqa: E402

from vidiff.data import ShapesDataset
from vidiff.data.io import contact_sheet, upscale
from vidiff.data.splits import HELD_OUT
from vidiff.evaluation.evaluate import score_clips
from vidiff.pipeline import SampleOptions, VideoPipeline

METRICS = ("permanence", "fidelity", "shape_stability", "physics_error_px", "warping_error", "flicker")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None)
    p.add_argument("--num", type=int, default=8)
    p.add_argument("--frames", type=int, default=64)
    args = p.parse_args()
    pipe = VideoPipeline.from_pretrained(args.model)
    data = ShapesDataset(pipe.config.data)
    captions = [data[HELD_OUT + i]["caption"] for i in range(args.num)]
    quiet, native = SampleOptions(progress=False), pipe.window
    made, seconds = {"context windows": [], "extension": []}, {"context windows": 0.0, "extension": 0.0}
    for i, caption in enumerate(captions):
        g = lambda: torch.Generator().manual_seed(i)    # noqa: E731
        start = time.time()
        made["context windows"].append(pipe(caption, num_frames=args.frames, generator=g(), sampling=quiet,
                                            output_type="uint8").pixels[0])
        seconds["context windows"] += time.time() - start
        start = time.time()
        first = pipe(caption, generator=g(), sampling=quiet, output_type="uint8").pixels[0]
        made["extension"].append(pipe.extend(first, caption, args.frames, g(), quiet, output_type="uint8").pixels[0])
        seconds["extension"] += time.time() - start
    rows = []
    for name, clips in made.items():
        whole = score_clips(clips, captions, pipe.config.data, fvd=False)[0]
        tail = score_clips([c[-native:] for c in clips], captions, pipe.config.data, fvd=False)[0]
        rows.append((name, whole, tail, seconds[name] / args.num))
    keys = [k for k in METRICS if k in rows[0][1]]
    head = "| method | s/clip | " + " | ".join(keys) + " | " + " | ".join(f"last {native}: {k}" for k in keys[:3]) + " |"
    lines = [f"{args.num} held-out prompts of the embedded model's world, seed i for prompt i, {args.frames} frames "
             f"(native {native}), the model's own sampler and steps.", "", head, "|" + "---|" * (2 + len(keys) + 3)]
    for name, whole, tail, s in rows:
        lines.append(f"| {name} | {s:.1f} | " + " | ".join(f"{whole[k]:.3f}" for k in keys) + " | "
                     + " | ".join(f"{tail[k]:.3f}" for k in keys[:3]) + " |")
    sheet = np.concatenate([contact_sheet(upscale(made[m][i][::4], 2)) for i in range(min(4, args.num))
                            for m in made], axis=0)
    Image.fromarray(sheet).save(RESULTS / "long_video.png")
    lines += ["", "![long video: rows alternate context windows / extension](long_video.png)"]
    publish("long_video", "Long video: context windows vs extension", "\n".join(lines),
            f"python benchmarks/long_video.py --num {args.num} --frames {args.frames}")


if __name__ == "__main__":
    main()
