"""Physics generalization: do frame-conditioned video models learn the law of a physics world, or
imitate training cases? The protocol of Kang et al., "How Far is Video Generation from World Model:
A Physical Law Perspective" (ICML 2025), at our scale (a benchmark, not a test).

    python benchmarks/physics_generalization.py [--minutes 10] [--num 16] [--threads 1]
                                                [--work /tmp/vidiff-physics] [--arms a,b,...]

The world (configs/physics-unet.yaml): two objects, gravity, elastic wall, floor and object collisions
(momentum conserved, masses ~ area). Every arm trains for the same minutes on this machine's CPU:
  unet-64       the embedded latent U-Net fine-tuned on 64 fixed clips          (configs/physics-unet.yaml)
  unet-all      the same on an endless stream of clips                          (a larger data budget)
  dit-64        a latent space-time DiT from scratch on 64 clips                (configs/physics-dit.yaml)
  dit-all       the same on the endless stream
  unet-strides  unet-all with clips at frame strides 1 and 2 (the model reads the stride): the idea
                the paper did not test, that seeing displacements at two frame rates makes speed a
                continuum, so speeds outside the range are less far from what was seen
  unet-motion   the recipe aimed at motion (configs/physics-unet-motion.yaml: plain v-loss, schedule
                shifted 3x towards noise), for its own 60 minutes (or 5,000 steps), sampled without history
                guidance; unet-motion-h3 is the same run sampled with the recipe's history guidance 3 (a pass
                without the given frames, steering towards them)
  unet-all-60   the control: unet-all for the same 60 minutes
  unet-scratch  unet-all from scratch at the DiT's learning rate: the DiT arms' footing, no embedded model
                to start from
Each model is given the first K frames (K = 4; 8: the second idea, more conditioning) of held-out
ground-truth clips and makes the rest (`VideoPipeline.extend`, as `vidiff eval --known K`). Sets:
  in-dist.     the training ranges (radius 0.15-0.2, speed 0.02-0.05 frame sizes per frame)
  OOD speed    speeds 0.065-0.085          OOD size    radius 0.10-0.13
  held-out     in-range clips with a colour-shape pair training never showed (red circle, ...)
Scores (vidiff.evaluation.law): velocity error against the simulator after the given frames, the share
of collisions whose objects leave within 30 degrees of the truth's directions, the lawful-collision
and gravity errors, and the viewer check. `--arms` trains and scores only those (finished arms are
kept in `--work`), so workers on two cores can split them; `--table` writes
docs/results/physics_generalization.md and physics_generalization.png from the arms finished there.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import RESULTS, publish, sample_sheet                   # noqa: E402
from vidiff.config import DataConfig, load_config                   # noqa: E402
from vidiff.data import ShapesDataset                               # noqa: E402
from vidiff.data.io import to_uint8                                 # noqa: E402
from vidiff.data.synthetic import render, step_world                # noqa: E402
from vidiff.data.splits import HELD_OUT                             # noqa: E402
from vidiff.evaluation.evaluate import score_clips                  # noqa: E402
from vidiff.pipeline import FrameConditioning, SampleOptions, VideoPipeline        # noqa: E402
from vidiff.training import Trainer                                 # noqa: E402
from vidiff.world import parse_caption                              # noqa: E402

@dataclass
class Arm:
    recipe: str
    clips: int = 0                   # data.shapes.num_clips (0: an endless stream)
    strides: tuple = (1,)            # data.shapes.strides
    minutes: float | None = None     # training minutes (None: --minutes)
    run: str | None = None           # the run folder under --work (None: the arm's name); arms sharing one
    history: float | None = None     # train it once and sample it differently (history guidance scale)
    init: str | None = None          # train.init_from ("": from scratch; None: the recipe's)
    lr: float | None = None          # train.lr (None: the recipe's)


ARMS = {
    "unet-64": Arm("configs/physics-unet.yaml", 64),
    "unet-all": Arm("configs/physics-unet.yaml"),
    "dit-64": Arm("configs/physics-dit.yaml", 64),
    "dit-all": Arm("configs/physics-dit.yaml"),
    "unet-strides": Arm("configs/physics-unet.yaml", strides=(1, 2)),
    "unet-motion": Arm("configs/physics-unet-motion.yaml", minutes=60, history=1.0),
    "unet-motion-h3": Arm("configs/physics-unet-motion.yaml", minutes=60, run="unet-motion", history=3.0),
    "unet-all-60": Arm("configs/physics-unet.yaml", minutes=60),
    "unet-scratch": Arm("configs/physics-unet.yaml", init="", lr=3e-4),
}
KNOWN = (4, 8)
SETS = ("in-dist.", "OOD speed", "OOD size", "held-out pairs")
COLUMNS = [("truth_velocity_error_px", "velocity err (px/frame)"), ("collision_direction", "collisions right"),
           ("collision_error_px", "collision err (px/frame)"), ("gravity_error_px", "gravity err (px/frame²)"),
           ("viewer_pass", "viewer pass")]
PAPER = ("Kang et al. 2025 found in-distribution prediction near perfect, and out-of-distribution prediction "
         "failing in a way that more data and larger models did not fix: the models retrieve the closest "
         "training case (weighing colour > size > velocity > shape) rather than apply the law.")


def world(name: str) -> DataConfig:
    data = load_config(ROOT / "configs/physics-unet.yaml").data
    s = data.shapes
    if name == "OOD speed":
        s = replace(s, speed=[0.065, 0.085])
    elif name == "OOD size":
        s = replace(s, radius=[0.10, 0.13])
    elif name == "held-out pairs":
        s = replace(s, exclude=[])
    return replace(data, shapes=s)


def test_clips(name: str, num: int) -> list[dict]:
    """`num` held-out ground-truth clips of a test set."""
    data = ShapesDataset(world(name))
    held_out = set(world("in-dist.").shapes.exclude)
    out, i = [], 0
    while len(out) < num:
        item = data[HELD_OUT + i]
        i += 1
        pairs = {f"{c} {s}" for c, s in parse_caption(item["caption"])}
        if name != "held-out pairs" or pairs & held_out:
            out.append(item)
    return out


def train(arm: Arm, run: Path, minutes: float) -> dict:
    cfg = load_config(ROOT / arm.recipe)
    minutes = arm.minutes or minutes
    cfg.data.shapes.num_clips, cfg.data.shapes.strides = arm.clips, list(arm.strides)
    if arm.init is not None:
        cfg.train.init_from = arm.init
    cfg.train.lr = arm.lr or cfg.train.lr
    cfg.train.time_limit_minutes, cfg.train.checkpoint_every = minutes, 10**9
    trainer = Trainer(cfg, run, resume=run.exists(), progress=False)
    if trainer.seconds < minutes * 60 and trainer.step < cfg.train.steps:   # a finished run is only re-scored
        trainer.train()
    return {"steps": trainer.step, "minutes": trainer.seconds / 60}


def inertia(items: list[dict], known: int, size: int) -> list[np.ndarray]:
    """The no-learning baseline: after the given frames each object keeps its last velocity, bouncing
    off the walls, with no gravity and no collisions."""
    clips = []
    for it in items:
        frames = len(it["tracks"][0].positions)
        starts = [replace(t, positions=t.positions[known - 1:known],
                          velocities=t.positions[known - 1:known] - t.positions[known - 2:known - 1]) for t in it["tracks"]]
        moved = step_world(starts, size, frames - known + 1, 0.0)
        tracks = [replace(t, positions=np.concatenate([t.positions[:known], m.positions[1:]]))
                  for t, m in zip(it["tracks"], moved)]
        clips.append(render(tracks, frames, size))
    return clips


def continue_clips(pipe: VideoPipeline, items: list[dict], known: int, history: float | None = None) -> list[np.ndarray]:
    return [pipe.extend(to_uint8(it["video"])[:known], it["caption"], len(it["tracks"][0].positions),
                        torch.Generator().manual_seed(i), SampleOptions(progress=False),
                        FrameConditioning(history=history), context=known).pixels[0]
            for i, it in enumerate(items)]


def score(clips: list[np.ndarray], items: list[dict], name: str, known: int) -> dict:
    summary, rows = score_clips(clips, [it["caption"] for it in items], world(name), fvd=False, known=known,
                                truths=[it["tracks"] for it in items])
    seen = sum(r.get("collisions_seen", 0) for r in rows)
    right = sum(r["collision_direction"] * r["collisions_seen"] for r in rows if r.get("collisions_seen"))
    summary["collision_direction"] = right / seen if seen else float("nan")
    summary["collisions_seen"] = seen
    return {k: v for k, v in summary.items() if not k.endswith("_median")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="training minutes per arm")
    ap.add_argument("--num", type=int, default=16, help="clips per test set")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="/tmp/vidiff-physics", help="run folders (kept, so a rerun continues)")
    ap.add_argument("--arms", default=",".join(ARMS), help="which arms this call trains and scores")
    ap.add_argument("--table", action="store_true", help="write the table and sheet from the arms finished in --work")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sets = {name: test_clips(name, args.num) for name in SETS}
    truth_path = work / "result-truth.json"
    if not truth_path.is_file():
        truth_path.write_text(json.dumps({name: score([to_uint8(it["video"]) for it in items], items, name, KNOWN[0])
                                          for name, items in sets.items()}, indent=1))
    for arm in args.arms.split(","):
        if arm not in ARMS:
            sys.exit(f"unknown arm '{arm}'; choose from: {', '.join(ARMS)}")
        done = work / f"result-{arm}.json"
        if done.is_file():
            continue
        a = ARMS[arm]
        info = train(a, work / (a.run or arm), args.minutes)
        pipe = VideoPipeline.from_pretrained(work / (a.run or arm))
        for known in KNOWN:
            for name, items in sets.items():
                if known != KNOWN[0] and name not in ("in-dist.", "OOD speed"):
                    continue
                clips = continue_clips(pipe, items, known, a.history)
                info[f"{name} K={known}"] = score(clips, items, name, known)
                print(arm, name, known, json.dumps({k: round(v, 3) for k, v in info[f"{name} K={known}"].items()
                                                    if isinstance(v, float)}), flush=True)
        done.write_text(json.dumps(info, indent=1))
    results = {arm: json.loads((work / f"result-{arm}.json").read_text()) for arm in ARMS
               if (work / f"result-{arm}.json").is_file()}
    if not args.table:
        print(f"{len(results)} of {len(ARMS)} arms finished: {', '.join(results)}; --table writes the table", flush=True)
        return
    write(results, json.loads(truth_path.read_text()), sets, work, args)


def write(results: dict, truth: dict, sets: dict, work: Path, args) -> None:
    head = "| arm | train min | steps | set | K | " + " | ".join(label for _, label in COLUMNS) + " |"
    lines = [head, "|---|---:|---:|---|---:|" + "---:|" * len(COLUMNS)]
    cell = lambda r, k: "–" if not np.isfinite(r.get(k, np.nan)) else f"{r[k]:.2f}"
    for name in SETS:
        lines.append(f"| ground truth | | | {name} | | " + " | ".join(cell(truth[name], k) for k, _ in COLUMNS) + " |")
    start = VideoPipeline.from_pretrained()         # where the U-Net arms start: no physics training
    for name in SETS:
        for known in KNOWN:
            if known != KNOWN[0] and name not in ("in-dist.", "OOD speed"):
                continue
            base = score(inertia(sets[name], known, world(name).size), sets[name], name, known)
            lines.append(f"| inertia (no learning) | | | {name} | {known} | " + " | ".join(cell(base, k) for k, _ in COLUMNS) + " |")
        base = score(continue_clips(start, sets[name], KNOWN[0]), sets[name], name, KNOWN[0])
        lines.append(f"| default model (no physics) | | | {name} | {KNOWN[0]} | "
                     + " | ".join(cell(base, k) for k, _ in COLUMNS) + " |")
    for arm, r in results.items():
        for key, s in r.items():
            if isinstance(s, dict):
                name, known = key.rsplit(" K=", 1)
                lines.append(f"| {arm} | {r['minutes']:.0f} | {r['steps']} | {name} | {known} | "
                             + " | ".join(cell(s, k) for k, _ in COLUMNS) + " |")
    # the sheet: 6 in-distribution continuations of each finished arm on the endless stream
    frames = [3, 6, 9, 12, 15]
    rows = [("truth", np.concatenate([np.concatenate(list(to_uint8(it["video"])[frames]), axis=0)
                                       for it in sets["in-dist."][:6]], axis=1))]
    for arm in [a for a in results if ARMS[a].clips == 0]:
        a = ARMS[arm]
        clips = continue_clips(VideoPipeline.from_pretrained(work / (a.run or arm)), sets["in-dist."][:6], KNOWN[0],
                               a.history)
        rows.append((arm, np.concatenate([np.concatenate(list(c[frames]), axis=0) for c in clips], axis=1)))
    sample_sheet(rows, RESULTS / "physics_generalization.png")
    body = (f"Training minutes per arm as shown, {args.threads} thread(s) each; {args.num} held-out clips "
            "per set, each continued from its first K ground-truth frames (seed i for clip i). Velocity error "
            "is against the simulator over the frames after the K given; `collisions right`: the share of the "
            "truth's collisions after them whose objects leave within 30° of the truth's directions; "
            "`collision err`: the outgoing velocities against the law applied to the video's own incoming "
            "motion; `gravity err`: the fitted gravity against the world's 0.128 px/frame². `inertia`: the "
            "baseline that learns nothing: after the given frames each object keeps its last velocity (walls "
            "only, no gravity, no collisions). `default model`: the embedded model the U-Net arms start from, "
            "which knows the world without gravity and collisions.\n\n"
            + "\n".join(lines)
            + "\n\n![in-distribution continuations](physics_generalization.png) — frames 3 (the last given), 6, "
              "9, 12, 15 (down) of 6 in-distribution clips (across): the truth, then each arm's continuation.\n\n"
            + f"**The paper's finding, for comparison:** {PAPER}\n")
    publish("physics_generalization", "Physics generalization: in and out of distribution", body,
            f"python benchmarks/physics_generalization.py --minutes {args.minutes:g} --num {args.num} "
            f"--threads {args.threads} --arms {','.join(results)} --table")


if __name__ == "__main__":
    main()
