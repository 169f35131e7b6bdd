"""A distilled student against its teacher: `vidiff eval` scores and seconds per clip (end to end,
decode included) on the same held-out prompts and seeds (a benchmark, not a test).

    python benchmarks/distillation.py --teacher default --student runs/distilled [--num 20] [--name distillation]

Rows: the teacher with its own sampling (its config's sampler, steps, grid and guidance), the teacher
with the same sampling at the student's step count, the student at its step count (DDIM, one pass a
step, guidance built in), and the ground truth. Writes
docs/results/<name>.md.
"""
from __future__ import annotations

import argparse
import time

import torch

from quality_vs_steps import METRICS, evaluate
from results import publish
from vidiff.data import ShapesDataset, unit_stride
from vidiff.data.splits import HELD_OUT
from vidiff.evaluation.fvd import reference_clips
from vidiff.evaluation.report import HIGHER_IS_BETTER
from vidiff.evaluation.sources import ground_truth
from vidiff.pipeline import SampleOptions, VideoPipeline


def sample(pipe, captions, steps, guidance) -> tuple[list, float]:
    clips, start = [], time.perf_counter()
    for i, caption in enumerate(captions):     # one clip at a time: the latency a user sees
        clips.append(pipe(caption, generator=torch.Generator().manual_seed(i),
                          sampling=SampleOptions(steps, guidance, progress=False)).pixels[0])
    return clips, (time.perf_counter() - start) / len(captions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="default")
    parser.add_argument("--student", required=True)
    parser.add_argument("--num", type=int, default=20)
    parser.add_argument("--name", default="distillation")
    args = parser.parse_args()
    teacher, student = VideoPipeline.from_pretrained(args.teacher), VideoPipeline.from_pretrained(args.student)
    n = student.config.diffusion.distilled_steps
    data = unit_stride(teacher.config.data)
    captions = [ShapesDataset(data)[HELD_OUT + i]["caption"] for i in range(args.num)]
    reference = reference_clips(data)
    rows = {}
    own = teacher.defaults()       # the teacher's own sampling (sampler, grid, guidance from its config)
    for name, pipe, steps in (("teacher", teacher, own.steps), ("teacher", teacher, n), ("student", student, n)):
        d = pipe.options(SampleOptions(steps))
        clips, seconds = sample(pipe, captions, d.steps, d.guidance)
        passes = d.steps * (2 if d.guidance != 1 else 1) * (2 if d.sampler == "heun" else 1)
        rows[f"{name}, {d.sampler} {d.steps} steps ({d.spacing}), guidance {d.guidance:g}"] = {
            **evaluate(clips, captions, data, reference), "s/clip": seconds, "passes": passes}
        print(name, d, f"{seconds:.2f} s/clip", flush=True)
    _, clips, truth = ground_truth(data, args.num)
    rows["ground truth"] = evaluate(clips, truth, data, reference)
    metrics = [m for m in METRICS if m in rows["ground truth"]]
    lines = ["| | network passes | s/clip | " + " | ".join(f"{m} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in metrics)
             + " |", "|---|---:|---:|" + "---:|" * len(metrics)]
    for key, r in rows.items():
        lines.append(f"| {key} | {r.get('passes', '')} | {r['s/clip']:.2f} | " if "s/clip" in r else f"| {key} | | | ")
        lines[-1] += " | ".join(f"{r.get(m, float('nan')):.3g}" for m in metrics) + " |"
    body = (f"{args.num} held-out prompts, one clip at a time, {torch.get_num_threads()} threads; student "
            f"`{args.student}` distilled from `{args.teacher}`.\n\n" + "\n".join(lines))
    publish(args.name, "Progressive distillation: student against teacher", body,
            f"python benchmarks/distillation.py --teacher {args.teacher} --student {args.student} --num {args.num}")


if __name__ == "__main__":
    main()
