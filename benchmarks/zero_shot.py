"""Zero-shot video from an image model (Text2Video-Zero): does it move objects as commanded? (a
benchmark, not a test)

    python benchmarks/zero_shot.py --model runs/image [--num 12] [--steps 25]

For each commanded motion (dx, dy) in pixels a frame, held-out captions are generated with
--zero-shot; each prompted object is tracked and its mean per-frame displacement compared with the
command. Also `vidiff eval`'s permanence, fidelity and shape stability of the clips. Writes
docs/results/zero_shot.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from results import publish
from vidiff.data import ShapesDataset, unit_stride
from vidiff.data.splits import HELD_OUT
from vidiff.evaluation.evaluate import score_clips
from vidiff.data.objects import track
from vidiff.pipeline import SampleOptions, VideoPipeline, ZeroShot
from vidiff.world import parse_caption

MOTIONS = [(1.5, 0.0), (0.0, 1.5), (-1.0, 1.0), (0.0, 0.0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--num", type=int, default=12)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--frames", type=int, default=16)
    args = parser.parse_args()
    pipe = VideoPipeline.from_pretrained(args.model)
    data = unit_stride(pipe.config.data)
    video_world = ShapesDataset(dataclasses.replace(data, frames=args.frames))
    captions = [video_world[HELD_OUT + i]["caption"] for i in range(args.num)]
    lines = ["| commanded (dx, dy) px/frame | measured (mean) | error px/frame | objects tracked | permanence | fidelity | "
             "shape_stability |", "|---|---|---:|---:|---:|---:|---:|"]
    start = time.time()
    for motion in MOTIONS:
        clips, moves = [], []
        for i, caption in enumerate(captions):
            video = pipe(caption, num_frames=args.frames, generator=torch.Generator().manual_seed(i),
                         sampling=SampleOptions(args.steps, progress=False), zero_shot=ZeroShot(motion)).pixels[0]
            clips.append(video)
            tracks, _ = track(video, [c for c, _ in parse_caption(caption)])
            for tr in tracks.values():
                p = np.array([d.centroid if d is not None else [np.nan, np.nan] for d in tr.detections])
                step = np.nanmean(p[1:] - p[:-1], axis=0)
                if not np.isnan(step).any():
                    moves.append(step)
        summary, _ = score_clips(clips, captions, video_world.cfg, fvd=False)
        mean = np.mean(moves, axis=0) if moves else np.array([np.nan, np.nan])
        error = float(np.mean([np.linalg.norm(m - np.array(motion)) for m in moves])) if moves else float("nan")
        lines.append(f"| ({motion[0]:g}, {motion[1]:g}) | ({mean[0]:.2f}, {mean[1]:.2f}) | {error:.2f} | {len(moves)} | "
                     f"{summary['permanence']:.3f} | {summary['fidelity']:.3f} | {summary.get('shape_stability', float('nan')):.3f} |")
        print(lines[-1], flush=True)
    body = (f"Image model `{args.model}`, {args.num} held-out captions, {args.frames} frames, {args.steps} DDIM steps, "
            f"guidance {pipe.defaults().guidance:g}; {time.time() - start:.0f} s.\n\n" + "\n".join(lines))
    publish("zero_shot", "Zero-shot video from an image model: commanded motion", body,
            f"python benchmarks/zero_shot.py --model {args.model} --num {args.num} --steps {args.steps}")


if __name__ == "__main__":
    main()
