"""Controlled damage to ground-truth clips, for calibrating the metrics: each corruption should lower
exactly the metric it targets, and a stronger corruption should lower it more."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..world import COLOURS
from ..data.synthetic import ObjectTrack, render, step_physics


def shuffle_frames(video: np.ndarray, rng: np.random.Generator, fraction: float = 1.0) -> np.ndarray:
    """Permute a random `fraction` of the frames among themselves."""
    idx = np.arange(len(video))
    chosen = rng.choice(idx, size=max(2, round(fraction * len(video))), replace=False)
    idx[np.sort(chosen)] = rng.permutation(chosen)
    return video[idx]


def freeze(video: np.ndarray) -> np.ndarray:
    return np.repeat(video[:1], len(video), axis=0)


def flicker(video: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Scale every frame's brightness by a random factor in [1 - strength, 1]."""
    gains = 1 - strength * rng.random(len(video))
    return np.clip(video * gains[:, None, None, None], 0, 255).round().astype(np.uint8)


def _splice(tracks: list[ObjectTrack], changed: list[ObjectTrack], frames: np.ndarray, size: int,
            total: int) -> np.ndarray:
    video, other = render(tracks, total, size), render(changed, total, size)
    video[frames] = other[frames]
    return video


def remove_object(tracks: list[ObjectTrack], size: int, frames: np.ndarray) -> np.ndarray:
    """The last object vanishes in the given frames."""
    return _splice(tracks, tracks[:-1], frames, size, len(tracks[0].positions))


def swap_colour(tracks: list[ObjectTrack], size: int, frames: np.ndarray) -> np.ndarray:
    """The last object takes a palette colour no object has, in the given frames."""
    used = {t.colour for t in tracks}
    new = next(c for c in COLOURS if c not in used)
    return _splice(tracks, tracks[:-1] + [replace(tracks[-1], colour=new)], frames, size, len(tracks[0].positions))


def change_shape(tracks: list[ObjectTrack], size: int, frames: np.ndarray) -> np.ndarray:
    """The last object takes another shape in the given frames (a circle becomes a square, ...)."""
    other = {"circle": "square", "square": "triangle", "triangle": "circle"}[tracks[-1].shape]
    return _splice(tracks, tracks[:-1] + [replace(tracks[-1], shape=other)], frames, size, len(tracks[0].positions))


def teleport(tracks: list[ObjectTrack], size: int, at: int, distance: float, gravity: float = 0.0) -> np.ndarray:
    """At frame `at` the last object jumps `distance` pixels towards the centre, then moves on lawfully
    (same velocity, same physics), so the jump is the only violation."""
    last = tracks[-1]
    offset = np.array([size / 2, size / 2]) - last.positions[at]
    start = last.positions[at] + distance * offset / max(np.linalg.norm(offset), 1e-9)
    start = np.clip(start, last.radius, size - last.radius)
    positions = last.positions.copy()
    positions[at:] = step_physics(start, last.velocities[at] - [0, gravity], last.radius, size,
                                  len(positions) - at, gravity)[0]
    return render(tracks[:-1] + [replace(last, positions=positions)], len(positions), size)
