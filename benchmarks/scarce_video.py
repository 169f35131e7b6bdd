"""Scarce video: which way of using plentiful images works best when only 64 captioned videos exist
(a benchmark, not a test).

    python benchmarks/scarce_video.py [--minutes 8] [--num 12] [--threads 1] [--work /tmp/scarce] [--arms a,b,...]

`--arms` trains and scores only those arms (a b c d e full); finished arms are kept in `--work`, so two
single-thread workers can split the arms between two cores (e.g. `--arms a,b,full` and `--arms c,d,e`)
and a last call without `--arms` writes the table from what they left.

Every arm gets the same training minutes (M) on this machine's CPU; recipes in configs/scarce/ (the
latent U-Net on the embedded model's VAE). The 64 clips never show three colour-shape pairs
(data.shapes.exclude: red triangle, green circle, blue square); the images show every pair.
  (a) video only      64 clips, from scratch, M minutes
  (b) joint           64 clips + every second batch stills of the whole world (VDM), M minutes
  (c) inflate, temporal   image model (M/2 on stills) inflated, temporal layers trained on the clips (M/2)
  (d) inflate, all    the same image model, all layers fine-tuned on the clips (M/2)
  (e) zero-shot       the image model trained on to M minutes, Text2Video-Zero (--zero-shot, motion 1.5,0)
  ceiling             the same U-Net on the endless stream of clips of the whole world, M minutes
Each is sampled with its defaults (DDIM 25 steps, guidance 3) on `--num` held-out prompts that
contain a held-out pair (unseen) and `--num` that do not (seen), seed i for prompt i, and scored by
`vidiff eval`'s metrics. Zero-shot's `motion err`: |mean tracked displacement per frame - command|.
Writes docs/results/scarce_video.md and scarce_video.png (frames 0, 5, 10, 15 of the first 4 unseen
prompts per arm).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import RESULTS, publish, sample_sheet                         # noqa: E402
from vidiff.config import load_config                         # noqa: E402
from vidiff.data import ShapesDataset                         # noqa: E402
from vidiff.data.splits import HELD_OUT                       # noqa: E402
from vidiff.evaluation.evaluate import score_clips            # noqa: E402
from vidiff.evaluation.fvd import reference_clips             # noqa: E402
from vidiff.data.objects import track                   # noqa: E402
from vidiff.pipeline import SampleOptions, VideoPipeline, ZeroShot  # noqa: E402
from vidiff.training import Trainer                           # noqa: E402
from vidiff.world import parse_caption                        # noqa: E402

MOTION = (1.5, 0.0)
METRICS = [("fidelity", "fidelity"), ("permanence", "permanence"), ("shape_stability", "shape stab."),
           ("physics_error_px", "physics px"), ("dynamic_degree", "dynamic"), ("flicker", "flicker"),
           ("viewer_pass", "viewer pass")]


def train(config: str, run: Path, minutes: float, init_from: Path | None = None) -> dict:
    """Train a configs/scarce recipe for `minutes` of training time (continuing `run` if it exists)."""
    cfg = load_config(ROOT / config)
    tc = cfg.train
    tc.steps, tc.time_limit_minutes, tc.sample_every, tc.checkpoint_every = 10**6, minutes, 10**9, 10**9
    if init_from is not None:
        tc.init_from = str(init_from)
    trainer = Trainer(cfg, run, resume=run.exists(), progress=False)
    if trainer.seconds < minutes * 60:     # a finished run is only re-scored
        trainer.train()
    return {"steps": trainer.step, "minutes": trainer.seconds / 60}


def prompts(num: int, held_out: list[str]) -> tuple[list[str], list[str]]:
    """(unseen, seen): held-out captions of the whole world with and without a held-out pair."""
    data = ShapesDataset(load_config(ROOT / "configs/scarce/full-data.yaml").data)
    unseen, seen, i = [], [], 0
    while len(unseen) < num or len(seen) < num:
        caption = data[HELD_OUT + i]["caption"]
        pairs = {f"{c} {s}" for c, s in parse_caption(caption)}
        target = unseen if pairs & set(held_out) else seen
        if len(target) < num:
            target.append(caption)
        i += 1
    return unseen, seen


def motion_error(clips: list[np.ndarray], captions: list[str]) -> float:
    errors = []
    for clip, caption in zip(clips, captions):
        colours = [c for c, _ in parse_caption(caption)]
        tracks, _ = track(clip, colours)
        for colour in colours:
            dets = tracks[colour].detections if colour in tracks else []
            pos = np.array([d.centroid if d is not None else [np.nan, np.nan] for d in dets])
            if len(pos) > 1:
                step = np.nanmean(pos[1:] - pos[:-1], axis=0)
                errors.append(float(np.linalg.norm(step - np.array(MOTION))))
    return float(np.nanmean(errors)) if errors else float("nan")


def score(run: Path, unseen: list[str], seen: list[str], reference, zero_shot: bool = False) -> tuple[dict, list]:
    pipe = VideoPipeline.from_pretrained(run)
    world = load_config(ROOT / "configs/scarce/full-data.yaml").data
    out, start = {}, time.perf_counter()
    sheet = []
    for name, captions in (("unseen", unseen), ("seen", seen)):
        clips = [pipe(c, generator=torch.Generator().manual_seed(i), sampling=SampleOptions(progress=False),
                      zero_shot=ZeroShot(MOTION) if zero_shot else None, num_frames=16).pixels[0]
                 for i, c in enumerate(captions)]
        summary, _ = score_clips(clips, captions, world, reference=reference)
        out[name] = summary
        if zero_shot:
            out[name]["motion_error"] = motion_error(clips, captions)
        if name == "unseen":
            sheet = clips[:4]
    out["clip_s"] = (time.perf_counter() - start) / (len(unseen) + len(seen))
    return out, sheet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=8.0, help="training minutes per arm (M)")
    ap.add_argument("--num", type=int, default=12, help="held-out prompts per set (unseen and seen)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="/tmp/vidiff-scarce", help="run folders (kept, so a rerun continues)")
    ap.add_argument("--arms", default="a,b,c,d,e,full", help="which arms this call trains and scores")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work, m = Path(args.work), args.minutes
    work.mkdir(parents=True, exist_ok=True)
    held_out = load_config(ROOT / "configs/scarce/video-only.yaml").data.shapes.exclude
    unseen, seen = prompts(args.num, held_out)
    reference = reference_clips(load_config(ROOT / "configs/scarce/full-data.yaml").data)
    wanted = set(args.arms.split(","))
    results, sheets = {}, {}

    def arm(key: str, name: str, make, zero_shot: bool = False) -> None:
        # One file per arm, so workers on other cores never overwrite each other's results.
        done_path = work / f"result-{key}.json"
        if not done_path.is_file() and key in wanted:
            info = make()
            run = info.pop("run")
            done_path.write_text(json.dumps({**info, **score(run, unseen, seen, reference, zero_shot)[0]}, indent=1))
        if done_path.is_file():
            results[name] = json.loads(done_path.read_text())
            print(name, json.dumps({k: v for k, v in results[name].items() if not isinstance(v, dict)}), flush=True)

    def trained(config: str, folder: str, minutes: float, init: Path | None = None) -> dict:
        return {"run": work / folder, **train(config, work / folder, minutes, init)}

    def image_half() -> dict:
        """The image model at M/2, trained once and shared by (c), (d) and (e)."""
        marker = work / "image-half.json"
        if not marker.is_file():
            marker.write_text(json.dumps(train("configs/scarce/image.yaml", work / "image-half", m / 2)))
        return json.loads(marker.read_text())

    def inflated(config: str, folder: str) -> dict:
        image = image_half()
        info = trained(config, folder, m / 2, work / "image-half")
        return {**info, "minutes": info["minutes"] + image["minutes"], "steps": f"{image['steps']} + {info['steps']}"}

    def zero_shot() -> dict:
        if not (work / "image-full").exists():
            import shutil
            image_half()
            shutil.copytree(work / "image-half", work / "image-full")
        return trained("configs/scarce/image.yaml", "image-full", m)

    arm("a", "(a) video only", lambda: trained("configs/scarce/video-only.yaml", "video-only", m))
    arm("b", "(b) joint image+video", lambda: trained("configs/scarce/joint.yaml", "joint", m))
    arm("c", "(c) inflate, temporal only", lambda: inflated("configs/scarce/inflate-temporal.yaml", "inflate-temporal"))
    arm("d", "(d) inflate, all layers", lambda: inflated("configs/scarce/inflate-all.yaml", "inflate-all"))
    arm("e", "(e) zero-shot from the image model", zero_shot, zero_shot=True)
    arm("full", "ceiling: full data", lambda: trained("configs/scarce/full-data.yaml", "full-data", m))
    if len(results) < 6:
        print(f"{len(results)} of 6 arms finished; the table is written once all are", flush=True)
        return
    for name, folder in (("(a) video only", "video-only"), ("(c) inflate, temporal only", "inflate-temporal"),
                         ("(d) inflate, all layers", "inflate-all"), ("ceiling: full data", "full-data")):
        pipe = VideoPipeline.from_pretrained(work / folder)
        sheets[name] = [pipe(c, generator=torch.Generator().manual_seed(i), sampling=SampleOptions(progress=False)).pixels[0]
                        for i, c in enumerate(unseen[:4])]
    write(results, sheets, unseen, seen, args)


def write(results: dict, sheets: dict, unseen: list[str], seen: list[str], args) -> None:
    rows = [(name, np.concatenate([np.concatenate(list(c[[0, 5, 10, 15]]), axis=0) for c in clips], axis=1))
            for name, clips in sheets.items()]
    sample_sheet(rows, RESULTS / "scarce_video.png")
    head = ("| arm | steps | train min | unseen fidelity | unseen permanence | seen fidelity | seen permanence | "
            + " | ".join(label for key, label in METRICS[2:]) + " | FVD-shapes (unseen) | motion err |")
    lines = [head, "|---|---:|---:|" + "---:|" * (len(METRICS) + 3)]
    for name, r in results.items():
        u, s = r["unseen"], r["seen"]
        mean = lambda k: (u.get(k, np.nan) + s.get(k, np.nan)) / 2
        lines.append(f"| {name} | {r['steps']} | {r['minutes']:.1f} | {u['fidelity']:.3f} | {u['permanence']:.3f} | "
                     f"{s['fidelity']:.3f} | {s['permanence']:.3f} | "
                     + " | ".join(f"{mean(k):.3f}" for k, _ in METRICS[2:])
                     + f" | {u.get('fvd_shapes', np.nan):.1f} | {u.get('motion_error', np.nan):.2f} |")
    body = (f"{args.minutes:g} training minutes per arm, {args.threads} thread(s); {args.num} unseen and {args.num} "
            "seen held-out prompts. Columns after `seen permanence` average the two sets.\n\n"
            f"Unseen prompts: {'; '.join(unseen[:6])} ...\n\n" + "\n".join(lines)
            + "\n\n![unseen prompts](scarce_video.png) — frames 0, 5, 10, 15 (down) of the first 4 unseen prompts "
            "(across) per arm.\n")
    publish("scarce_video", "Scarce video: 64 captioned clips and plentiful images", body,
            f"python benchmarks/scarce_video.py --minutes {args.minutes:g} --num {args.num} --threads {args.threads}")


if __name__ == "__main__":
    main()
