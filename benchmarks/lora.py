"""LoRA against full fine-tuning: `vidiff tune` on one clip, the same minutes each (a benchmark, not a test).

    python benchmarks/lora.py [--minutes 3] [--num 8] [--threads 2] [--work /tmp/vidiff-lora]

Every arm starts from the embedded default model and trains on the same held-out ground-truth clip
(two objects) for the same training minutes on this machine's CPU:
  full          every weight (the stored result is a whole model)
  tune layers   Tune-A-Video's layers, the temporal ones and the attention queries (`vidiff tune`)
  LoRA r=4      a rank-4 adapter on those layers, the model frozen (`vidiff tune --lora 4`)
  LoRA r=16     the same at rank 16
Scores: the size of what must be stored; the denoising loss on the clip at fixed noise (how well
the clip was learned; the default model's before any tuning beside it); a sample with the clip's
caption and first frame (image-to-video, seed 0) against the clip, in PSNR; and on `--num` other
held-out prompts the viewer pass, to see what the tuning cost the model elsewhere.
Writes docs/results/lora.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import publish                                           # noqa: E402
from vidiff.checkpoint import resolve_checkpoint                      # noqa: E402
from vidiff.data import ShapesDataset                                 # noqa: E402
from vidiff.data.io import save_video, to_uint8                       # noqa: E402
from vidiff.data.splits import HELD_OUT                               # noqa: E402
from vidiff.evaluation.evaluate import score_clips                    # noqa: E402
from vidiff.pipeline import SampleOptions, VideoPipeline              # noqa: E402
from vidiff.training import Trainer                                   # noqa: E402
from vidiff.training.diffusion import training_loss                   # noqa: E402
from vidiff.training.tune import tune_config                          # noqa: E402

ARMS = {"full": ("all", 0, 1e-4), "tune layers": (None, 0, 1e-4), "LoRA r=4": (None, 4, 1e-3), "LoRA r=16": (None, 16, 1e-3)}


def clip_loss(pipe: VideoPipeline, clip: dict) -> float:
    """Denoising loss on the clip over 16 fixed noise draws (the model's own objective)."""
    x0 = pipe.bundle.codec.encode(clip["video"][None].repeat(16, 1, 1, 1, 1))
    ids = pipe.model.tokenizer.encode([clip["caption"]] * 16)
    cfg = pipe.config
    with torch.no_grad():
        return training_loss(pipe.model, cfg, x0, ids, pipe.model.tokenizer.empty(1), torch.Generator().manual_seed(7)).item()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255 ** 2 / max(mse, 1e-9)))


def score(pipe: VideoPipeline, clip: dict, prompts: list[str], data) -> dict:
    frames = to_uint8(clip["video"])
    quiet = SampleOptions(progress=False)
    sample = pipe(clip["caption"], image=frames[0], generator=torch.Generator().manual_seed(0), sampling=quiet).pixels[0]
    others = [pipe(p, generator=torch.Generator().manual_seed(i), sampling=quiet).pixels[0] for i, p in enumerate(prompts)]
    summary, _ = score_clips(others, prompts, data, fvd=False)
    return {"clip_loss": clip_loss(pipe, clip), "clip_psnr": psnr(sample, frames), "others_viewer_pass": summary["viewer_pass"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="training minutes per arm")
    ap.add_argument("--num", type=int, default=8, help="other held-out prompts scored per arm")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="/tmp/vidiff-lora")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base = VideoPipeline.from_pretrained()
    data = ShapesDataset(base.config.data)
    clip = next(it for it in (data[HELD_OUT + 1000 + i] for i in range(100)) if len(it["tracks"]) == 2)
    save_video(to_uint8(clip["video"]), work / "clip.mp4", overwrite=True)
    prompts = [data[HELD_OUT + i]["caption"] for i in range(args.num)]
    rows = {"default model (no tuning)": {"stored_kb": (resolve_checkpoint("default") / "model.safetensors").stat().st_size
                                          / 1024, "steps": 0, **score(base, clip, prompts, base.config.data)}}
    for name, (trainable, rank, lr) in ARMS.items():
        run = work / name.replace(" ", "-").replace("=", "")
        cfg = tune_config(work / "clip.mp4", clip["caption"], "default", run, steps=10**6, lr=lr, lora=rank)
        cfg.train.time_limit_minutes, cfg.train.sample_every, cfg.train.checkpoint_every = args.minutes, 10**9, 10**9
        if trainable:
            cfg.train.trainable = trainable
        trainer = Trainer(cfg, run, resume=(run / "latest").is_file(), progress=False)
        if trainer.seconds < args.minutes * 60:
            trainer.train()
        folder = resolve_checkpoint(run)
        stored = folder / ("lora.safetensors" if rank else "ema.safetensors")
        rows[name] = {"stored_kb": stored.stat().st_size / 1024, "steps": trainer.step,
                      **score(VideoPipeline.from_pretrained(run), clip, prompts, base.config.data)}
        print(name, json.dumps(rows[name]), flush=True)
    lines = ["| arm | steps | stored (KB) | clip loss ↓ | clip PSNR (dB) ↑ | viewer pass, other prompts ↑ |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['steps']} | {r['stored_kb']:,.0f} | {r['clip_loss']:.4f} | {r['clip_psnr']:.1f} | "
                     f"{r['others_viewer_pass']:.2f} |")
    body = (f"{args.minutes:g} training minutes per arm on {args.threads} thread(s), from the embedded default model, on "
            f"one held-out clip: \"{clip['caption']}\". `clip PSNR`: an image-to-video sample from the clip's first "
            f"frame and caption (seed 0) against the clip. `viewer pass, other prompts`: {args.num} other held-out "
            "prompts, text-to-video, seeds 0..n-1. `stored`: what must be kept: the EMA weights, or the adapter.\n\n"
            + "\n".join(lines) + "\n")
    publish("lora", "LoRA against full fine-tuning on one clip", body,
            f"python benchmarks/lora.py --minutes {args.minutes:g} --num {args.num} --threads {args.threads}")


if __name__ == "__main__":
    main()
