"""Issue 33's table for a shipped-model candidate, models side by side in one run: blend_share over
held-out prompts, viewer pass (all, one-object, two-object prompts), seconds a clip, and the eight
showcase clips (the README's four prompts at seed 0, the four two-object prompts of issue 25 at seed 7)
with the frames each blends, as a sheet to look at.

    python benchmarks/occlusion_model.py --model default --model runs/new-default --num 80
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from results import RESULTS, publish, sample_sheet
from vidiff.data import ShapesDataset, unit_stride
from vidiff.data.splits import HELD_OUT
from vidiff.evaluation.evaluate import score_clips
from vidiff.evaluation.occlusion import blended
from vidiff.pipeline import SampleOptions, VideoPipeline
from vidiff.world import parse_caption

README = ["a red circle bouncing", "a blue square and a yellow triangle bouncing", "a green triangle bouncing",
          "a magenta circle and a cyan square bouncing"]
PAIRS = ["a red circle and a blue square bouncing", "a yellow square and a magenta circle bouncing",
         "a green triangle and a cyan circle bouncing", "a blue circle and a red triangle bouncing"]
SHOWCASE = [(p, 0) for p in README] + [(p, 7) for p in PAIRS]


def blended_frames(video: np.ndarray, caption: str) -> int:
    """Frames holding a two-tone blend of the prompt's two colours (0 for a one-object prompt)."""
    colours = [c for c, _ in parse_caption(caption)]
    return sum(blended(frame, colours[0], colours[1]) for frame in video) if len(colours) == 2 else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="model folder, or `default`; repeat")
    parser.add_argument("--num", type=int, default=80)
    parser.add_argument("--name", default="occlusion_model")
    args = parser.parse_args()
    quiet = SampleOptions(progress=False)
    lines = [f"{args.num} held-out prompts (video i with seed i, each model's own sampling settings), scored at "
             "32x32; blend share: the mean over the videos where the two objects meet of the share of meeting frames "
             "holding a 2x2 block of pixels that mixes both colours (ground truth: 0). Showcase: the README's four "
             "prompts at seed 0 and issue 25's four two-object prompts at seed 7; a clip passes with no blended frame.",
             "", "| model | blend share | viewer pass | one-object | two-object | s/clip | showcase without a blended "
             "frame | blended frames per showcase clip |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    sheet = []
    for name in args.model:
        pipe = VideoPipeline.from_pretrained(None if name == "default" else name)
        data = unit_stride(pipe.config.data)
        captions = [ShapesDataset(data)[HELD_OUT + i]["caption"] for i in range(args.num)]
        start = time.perf_counter()
        clips = [pipe(c, generator=torch.Generator().manual_seed(i), sampling=quiet).pixels[0]
                 for i, c in enumerate(captions)]
        seconds = (time.perf_counter() - start) / args.num
        summary, rows = score_clips(clips, captions, data, fvd=False)
        single = [r["viewer_pass"] for r in rows if r["objects_prompted"] == 1]
        double = [r["viewer_pass"] for r in rows if r["objects_prompted"] == 2]
        shows = [pipe(p, generator=torch.Generator().manual_seed(s), sampling=quiet).pixels[0] for p, s in SHOWCASE]
        counts = [blended_frames(v, p) for v, (p, _) in zip(shows, SHOWCASE)]
        lines.append(f"| {name} | {summary['blend_share']:.2f} | {summary['viewer_pass']:.3f} "
                     f"({sum(r['viewer_pass'] for r in rows)}/{len(rows)}) | {np.mean(single):.3f} ({sum(single)}/{len(single)}) | "
                     f"{np.mean(double):.3f} ({sum(double)}/{len(double)}) | {seconds:.2f} | "
                     f"{sum(c == 0 for c in counts)} of {len(counts)} | {', '.join(map(str, counts))} |")
        print(lines[-1], flush=True)
        sheet += [(f"{name}: {p} (seed {s}), {c} blended", np.concatenate(list(v[::2]), 1))
                  for v, (p, s), c in zip(shows, SHOWCASE, counts)]
    sample_sheet(sheet, RESULTS / f"{args.name}.png")
    lines += ["", f"![showcase clips, every 2nd frame]({args.name}.png)"]
    publish(args.name, "Occlusion in the shipped model's samples", "\n".join(lines),
            "python benchmarks/occlusion_model.py " + " ".join(f"--model {m}" for m in args.model) + f" --num {args.num}")


if __name__ == "__main__":
    main()
