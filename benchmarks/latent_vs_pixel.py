"""Latent (DiT, U-Net) vs pixel (U-Net) diffusion at equal training wall-clock (a benchmark, not a test).

    python benchmarks/latent_vs_pixel.py --vae runs/vae-shapes [--minutes 20] [--evals 4] [--num 24]
                                         [--models "pixel U-Net" "latent DiT" "latent U-Net"]
                                         [--runs runs/latent-vs-pixel] [--out eval/latent_vs_pixel]

The recipes (configs/tiny-shapes.yaml, the pixel U-Net of the embedded model,
configs/tiny-shapes-latent-dit.yaml and configs/tiny-shapes-latent-unet.yaml) train one after the
other on this machine for the same training time. Each first measures its own steps/s over a few steps and sets train.steps so its
cosine learning-rate schedule ends at the time limit (train.time_limit_minutes is the hard stop).
A latent step includes encoding its batch with the frozen VAE (the synthetic stream is endless, so
nothing is cached). --evals checkpoints of each run are scored with `vidiff eval`'s metrics on the
same held-out prompts and initial noise (DDIM, 25 steps, guidance 3). Runs and scores are kept, so
an interrupted benchmark continues. Prints one markdown table.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from quality_vs_steps import METRICS, evaluate
from results import publish
from vidiff.checkpoint import read_config, resolve_checkpoint
from vidiff.config import load_config
from vidiff.data import ShapesDataset
from vidiff.data.splits import HELD_OUT
from vidiff.evaluation.fvd import reference_clips
from vidiff.evaluation.report import HIGHER_IS_BETTER
from vidiff.evaluation.sources import ground_truth
from vidiff.pipeline import SampleOptions, VideoPipeline
from vidiff.training import Trainer

RECIPES = {"pixel U-Net": "configs/tiny-shapes.yaml", "latent DiT": "configs/tiny-shapes-latent-dit.yaml",
           "latent U-Net": "configs/tiny-shapes-latent-unet.yaml"}
CHUNK = 4


def recipe(name: str, vae: str):
    cfg = load_config(RECIPES[name])
    if cfg.train.vae:
        cfg.train.vae = vae
    return cfg


def measure_rate(cfg, warm: int = 3, timed: int = 12) -> float:
    """Training steps per second of this recipe on this machine (after a few warm-up steps)."""
    with tempfile.TemporaryDirectory() as folder:
        cfg.train.steps = warm + timed
        trainer = Trainer(cfg, folder, progress=False)
        trainer.start_loader()
        for _ in range(warm):
            trainer.train_step()
        start = time.perf_counter()
        for _ in range(timed):
            trainer.train_step()
        return timed / (time.perf_counter() - start)


def train(name: str, args, run: Path) -> dict:
    """Train one recipe for args.minutes (or finish an interrupted run); returns its rate and size."""
    info_path = run / "benchmark.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
    else:
        rate = measure_rate(recipe(name, args.vae))
        info = {"steps_per_s": rate, "steps": max(args.evals, int(rate * args.minutes * 60))}
        run.mkdir(parents=True, exist_ok=True)
        info_path.write_text(json.dumps(info))
    resume = (run / "latest").is_file()
    cfg = read_config(resolve_checkpoint(run)) if resume else recipe(name, args.vae)   # a run goes on with its own config
    cfg.train.steps, cfg.train.time_limit_minutes = info["steps"], args.minutes
    cfg.train.checkpoint_every = cfg.train.sample_every = max(1, info["steps"] // args.evals)
    cfg.train.keep_last = args.evals + 1
    trainer = Trainer(cfg, run, resume=resume)
    info["params_m"] = sum(p.numel() for p in trainer.model.parameters()) / 1e6
    if trainer.step < cfg.train.steps and trainer.seconds < args.minutes * 60:
        print(f"{name}: {info['steps_per_s']:.2f} steps/s measured, training {info['steps']} steps or "
              f"{args.minutes} min", flush=True)
        trainer.train()
    return info


def score(folder: Path, captions, data, reference, num: int) -> dict:
    pipe = VideoPipeline.from_pretrained(folder)
    clips, start = [], time.perf_counter()
    for chunk in range(0, num, CHUNK):
        clips += list(pipe(captions[chunk:chunk + CHUNK], generator=torch.Generator().manual_seed(chunk),
                           sampling=SampleOptions(25, 3.0, "ddim", progress=False)).pixels)
    seconds = (time.perf_counter() - start) / num
    state = json.loads((folder / "state.json").read_text())
    return {**evaluate(clips, captions, data, reference), "seconds_per_clip": seconds,
            "step": state["step"], "train_minutes": state["seconds"] / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", required=True, help="a `vidiff train-vae` run folder")
    parser.add_argument("--minutes", type=float, default=20.0, help="training time of each model")
    parser.add_argument("--evals", type=int, default=4, help="checkpoints of each run to score")
    parser.add_argument("--num", type=int, default=24, help="videos per score")
    parser.add_argument("--models", nargs="+", default=list(RECIPES), choices=list(RECIPES), metavar="MODEL",
                        help=f"recipes to train and score (default: all of {', '.join(RECIPES)})")
    parser.add_argument("--runs", type=Path, default=Path("runs/latent-vs-pixel"))
    parser.add_argument("--out", type=Path, default=Path("eval/latent_vs_pixel"))
    parser.add_argument("--name", default="latent_vs_pixel", help="the results file: docs/results/<name>.md")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache_path = args.out / "results.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}

    data = load_config(RECIPES["pixel U-Net"]).data
    captions = [ShapesDataset(data)[HELD_OUT + i]["caption"] for i in range(args.num)]
    reference = reference_clips(data)
    infos = {}
    for name in args.models:
        run = args.runs / name.replace(" ", "-").lower()
        infos[name] = train(name, args, run)
        for folder in sorted((run / "checkpoints").iterdir()):
            key = f"{name} {folder.name}"
            if key not in cache or cache[key]["videos"] != args.num:
                cache[key] = {"model": name, **score(folder, captions, data, reference, args.num)}
                cache_path.write_text(json.dumps(cache, indent=1))
                print(f"{key}: scored", flush=True)
    if "ground truth" not in cache or cache["ground truth"]["videos"] != args.num:
        _, clips, truth = ground_truth(data, args.num)
        cache["ground truth"] = {"model": "ground truth", **evaluate(clips, truth, data, reference)}
        cache_path.write_text(json.dumps(cache, indent=1))
    rates = "\n".join(f"- {name}: {info['params_m']:.2f} M parameters, {info['steps_per_s']:.2f} train steps/s measured"
                      for name, info in infos.items())
    publish(args.name, "Latent and pixel diffusion at equal training wall-clock",
            rates + "\n\n" + table([c for c in cache.values() if c["videos"] == args.num]),
            f"python benchmarks/latent_vs_pixel.py --vae {args.vae} --minutes {args.minutes:g} --evals {args.evals} "
            f"--num {args.num} --models " + " ".join(f'"{m}"' for m in args.models) + f" --name {args.name}")


def table(cells: list[dict]) -> str:
    """One row per scored checkpoint, by model then training time; one column per metric."""
    metrics = [m for m in METRICS if any(m in c for c in cells)]
    lines = ["| model | step | train min | s/clip | " + " | ".join(f"{m} {'↑' if HIGHER_IS_BETTER[m] else '↓'}"
                                                               for m in metrics) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(metrics)]
    for c in sorted(cells, key=lambda c: (c["model"] == "ground truth", c["model"], c.get("train_minutes", 0))):
        lines.append(f"| {c['model']} | {c.get('step', '')} | " + (f"{c['train_minutes']:.1f}" if "step" in c else "")
                     + " | " + (f"{c['seconds_per_clip']:.2f}" if "seconds_per_clip" in c else "") + " | "
                     + " | ".join(f"{c.get(m, float('nan')):.3g}" for m in metrics) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
