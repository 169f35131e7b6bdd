"""Does a VAE keep two meeting objects apart? (a benchmark, not a test; issue 33's VAE table)

    python benchmarks/vae_occlusion.py --vae default --vae runs/vae16 [--num 40] [--name vae_occlusion]

The same `--num` held-out two-object ground-truth clips of the embedded model's world (16 frames of
32x32, stride 1) go through each VAE (encode, decode; no diffusion), and each reconstruction is scored:
  blend share     of the frames where the two objects meet, the share holding a blend of their colours
                  thicker than an edge (vidiff eval's blend_share, summed over the clips; the truth has none)
  PSNR            against the clip
  velocity error  mean |v_reconstructed - v_true| (px/frame) of each object's clear centroid: does the
                  drawn objects' jitter start in the VAE?
  latent          numbers a clip's latent holds, and the ratio to the pixels
  step time       a training step (forward + backward, batch 4) of the embedded model's U-Net at that
                  latent's channel count and size: what diffusion on it costs
Writes docs/results/<name>.md, and <name>.png: three clips at every second frame, the truth above each
VAE's reconstruction (look at where the objects meet).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from results import RESULTS, publish, sample_sheet
from vidiff.checkpoint import load_vae, read_config, resolve_checkpoint
from vidiff.data import unit_stride
from vidiff.data.objects import track
from vidiff.evaluation.occlusion import blend_share
from vidiff.evaluation.reconstruction import psnr, reconstruct
from vidiff.evaluation.sources import ground_truth
from vidiff.models import build_model
from vidiff.world import parse_caption


def two_object_clips(num: int):
    data = unit_stride(read_config(resolve_checkpoint("default")).data)
    world = replace(data, frames=16, shapes=replace(data.shapes, min_objects=2, max_objects=2))
    _, clips, captions = ground_truth(world, num)
    return clips, captions


def centroids(video: np.ndarray, colours: list[str]) -> dict[str, np.ndarray]:
    tracks = track(video, colours)[0]
    out = {}
    for c, t in tracks.items():
        usable = t.usable()
        out[c] = np.array([d.centroid if (d is not None and ok) else (np.nan, np.nan)
                           for d, ok in zip(t.detections, usable)], float)
    return out


def velocity_error(truth: np.ndarray, video: np.ndarray, colours: list[str]) -> list[float]:
    a, b = centroids(truth, colours), centroids(video, colours)
    errors = []
    for c in set(a) & set(b):
        va, vb = np.diff(a[c], axis=0), np.diff(b[c], axis=0)
        ok = np.isfinite(va).all(1) & np.isfinite(vb).all(1)
        errors += list(np.linalg.norm(va[ok] - vb[ok], axis=1))
    return errors


def step_time(channels: int, latent: tuple[int, int, int]) -> float:
    """Seconds of one forward + backward of the embedded model's U-Net on (4, channels, T, h, w)."""
    cfg = read_config(resolve_checkpoint("default"))
    model_cfg = replace(cfg.model, in_channels=channels)
    model = build_model(model_cfg, cfg.trained_words())
    x = torch.randn(4, channels, *latent)
    ids = model.tokenizer.encode(["a red circle and a blue square bouncing"] * 4)
    log_snr = torch.zeros(4)
    times = []
    for _ in range(4):
        start = time.perf_counter()
        model(x, log_snr, ids=ids).square().mean().backward()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", action="append", required=True, help="VAE run/checkpoint, or `default`; repeat")
    parser.add_argument("--num", type=int, default=40)
    parser.add_argument("--name", default="vae_occlusion")
    args = parser.parse_args()
    torch.set_grad_enabled(True)
    clips, captions = two_object_clips(args.num)
    colours_of = [[colour for colour, _ in parse_caption(c)] for c in captions]
    truth = [blend_share(c, track(c, cols)[0], cols) for c, cols in zip(clips, colours_of)]
    truth_meet, truth_blend = sum(m for _, m in truth), sum(round(s * m) for s, m in truth if m)
    lines = [f"{args.num} held-out two-object clips of 16x32x32 (stride 1), the embedded model's world; "
             f"the truth: {truth_blend} blended of {truth_meet} meeting frames.", "",
             "| VAE | latent (C x T x h x w) | pixels / latent | blended / meeting frames | blend share | PSNR (dB) | "
             "velocity error (px/frame) | U-Net step (s) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    sheet = {i: [(f"truth: {captions[i]}", np.concatenate(list(clips[i][:16:2]), 1))] for i in (0, 2, 4)}
    for name in args.vae:
        vae, _ = load_vae(name)
        for i, rows in sheet.items():
            rows.append((name, np.concatenate(list(reconstruct(clips[i], vae)[1][:16:2]), 1)))
        blended = meeting = 0
        psnrs, errors = [], []
        for clip, colours in zip(clips, colours_of):
            truth, video = reconstruct(clip, vae)
            share, meet = blend_share(video, track(video, colours)[0], colours)
            meeting += meet
            blended += round(share * meet) if meet else 0
            psnrs.append(psnr(truth, video))
            errors += velocity_error(truth, video, colours)
        shape = vae.latent_shape(16, 32, 32)
        lines.append(f"| {name} | {' x '.join(map(str, shape))} | {3 * 16 * 32 * 32 / np.prod(shape):.0f}x | "
                     f"{blended} / {meeting} | {blended / max(meeting, 1):.2f} | {np.mean(psnrs):.2f} | "
                     f"{np.mean(errors):.3f} | {step_time(shape[0], shape[1:]):.3f} |")
        print(lines[-1])
    sample_sheet([row for rows in sheet.values() for row in rows], RESULTS / f"{args.name}.png")
    lines += ["", f"![truth and reconstructions]({args.name}.png)"]
    publish(args.name, "VAE candidates: do two meeting objects stay two?", "\n".join(lines),
            "python benchmarks/vae_occlusion.py " + " ".join(f"--vae {n}" for n in args.vae) + f" --num {args.num}")


if __name__ == "__main__":
    main()
