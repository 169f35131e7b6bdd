"""Where does the drawn objects' jitter come from? (issue 33, item 3; a benchmark, not a test)

    python benchmarks/jitter_stages.py [--model default] [--num 16] [--known 4]

Each stage is measured on the same held-out ground-truth clips of the model's own world, against the
truth video itself (its tracked objects), so physics the model does not know does not count, only how
steadily it draws what is there:
  VAE round trip        encode, decode; no diffusion
  sampler, strength s   the clip's latent noised to the grid point s of the way back from the end (SDEdit),
                        then denoised by the model with the first `known` frames given (its masked-frame
                        input): s = 1 is a free continuation from noise, small s a light redraw
  history guidance S    a free continuation guided towards the given frames (--history)
Velocity error: mean |v_drawn - v_true| (px/frame) of each object's clear centroid over the frames after
the known ones (a free continuation may also take another plausible path); position error likewise for
the centroids; jitter: the median |second difference| of the drawn centroids (the truth's is its own row). Writes docs/results/jitter_stages.md.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from results import publish
from vae_occlusion import centroids, velocity_error
from vidiff.data import ShapesDataset, unit_stride
from vidiff.data.io import to_uint8
from vidiff.data.splits import HELD_OUT
from vidiff.diffusion import schedule_of, alpha_sigma, sampling_grid
from vidiff.diffusion.conditioning import frame_mask
from vidiff.pipeline import GridSpan, KnownFrames, SampleOptions, VideoPipeline, sample_video
from vidiff.world import parse_caption

STRENGTHS = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0)


def jitter(video: np.ndarray, colours: list[str]) -> list[float]:
    """|second difference| (px/frame^2) of each object's clear centroid: ~0 for steady motion (a bounce or a
    collision is one spike, which the median over clips ignores)."""
    out = []
    for track in centroids(video, colours).values():
        d2 = np.linalg.norm(np.diff(track, 2, axis=0), axis=1)
        out += list(d2[np.isfinite(d2)])
    return out


def position_error(truth: np.ndarray, video: np.ndarray, colours: list[str]) -> list[float]:
    a, b = centroids(truth, colours), centroids(video, colours)
    errors = []
    for c in set(a) & set(b):
        d = np.linalg.norm(a[c] - b[c], axis=1)
        errors += list(d[np.isfinite(d)])
    return errors


def to_model(clip: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (1, 3, T, H, W) in [-1, 1]."""
    return torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1


@torch.no_grad()
def redraw(pipe: VideoPipeline, clip: np.ndarray, caption: str, strength: float, known: int, seed: int,
           history: float = 1.0) -> np.ndarray:
    """The clip's latent noised `strength` of the way back and denoised with its first `known` frames given."""
    options = pipe.options(SampleOptions(progress=False))
    grid = sampling_grid(schedule_of(pipe.config.diffusion.schedule, pipe.config.diffusion.shift), options.steps, options.spacing)
    start = min(options.steps - 1, round((1 - strength) * options.steps))
    pixels = to_model(clip)
    z = pipe.bundle.codec.encode(pixels)
    g = torch.Generator().manual_seed(seed)
    alpha, sigma = alpha_sigma(grid[start])
    x = float(alpha) * z + float(sigma) * torch.randn(z.shape, generator=g)
    frames = pipe.bundle.codec.encode(pixels)
    known_frames = KnownFrames(frames, frame_mask("first_k", z.shape[2], known), "trained", history=history)
    cond, null = pipe.encode_prompt(caption)
    out = sample_video(pipe.bundle, cond, null, tuple(z.shape[1:]), options, g, known=known_frames,
                       span=GridSpan(x, start))
    return to_uint8(pipe.bundle.codec.decode(out))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--known", type=int, default=4)
    parser.add_argument("--history", default="3,8", help="history guidance scales for more free-continuation rows")
    parser.add_argument("--name", default="jitter_stages", help="the results file under docs/results")
    args = parser.parse_args()
    pipe = VideoPipeline.from_pretrained(None if args.model == "default" else args.model)
    data = unit_stride(pipe.config.data)
    dataset = ShapesDataset(data)
    items = [dataset[HELD_OUT + i] for i in range(args.num)]
    clips = [to_uint8(it["video"]) for it in items]
    colours = [[c for c, _ in parse_caption(it["caption"])] for it in items]
    k = args.known
    round_trip = [to_uint8(pipe.bundle.codec.decode(pipe.bundle.codec.encode(to_model(c))))[0] for c in clips]
    rows = {"ground truth": clips, "VAE round trip": round_trip}
    for s in STRENGTHS:
        rows[f"sampler, strength {s:g}"] = [redraw(pipe, c, it["caption"], s, k, i)
                                             for i, (c, it) in enumerate(zip(clips, items))]
        print(f"strength {s:g} done", flush=True)
    for h in [float(x) for x in args.history.split(",") if x]:
        rows[f"free continuation, history guidance {h:g}"] = [redraw(pipe, c, it["caption"], 1.0, k, i, h)
                                                              for i, (c, it) in enumerate(zip(clips, items))]
    lines = [f"Model `{args.model}`. {args.num} held-out clips of the model's world (16 frames of 32x32); the first {k} frames given to "
             f"the sampler; errors over frames {k}-15 against the truth video's own tracked objects; the model's "
             "own sampler, steps and guidance. History guidance S: a third pass without the given frames, the "
             "output moved S - 1 times its difference further (Song et al. 2025).", "",
             "| stage | velocity error (px/frame) | position error (px) | jitter, median (px/frame²) |", "|---|---:|---:|---:|"]
    for name, videos in rows.items():
        vel = [e for t, v, c in zip(clips, videos, colours) for e in velocity_error(t[k - 1:], v[k - 1:], c)]
        pos = [e for t, v, c in zip(clips, videos, colours) for e in position_error(t[k:], v[k:], c)]
        shake = [e for v, c in zip(videos, colours) for e in jitter(v[k - 1:], c)]
        lines.append(f"| {name} | {np.mean(vel):.3f} | {np.mean(pos):.2f} | {np.median(shake):.3f} |")
        print(lines[-1], flush=True)
    publish(args.name, "Where the drawn objects' jitter comes from", "\n".join(lines),
            f"python benchmarks/jitter_stages.py --model {args.model} --num {args.num} --known {k} --history {args.history}"
            + ("" if args.name == "jitter_stages" else f" --name {args.name}"))


if __name__ == "__main__":
    main()
