"""Controlled damage to ground-truth clips, for calibrating the metrics: each corruption should lower
exactly the metric it targets, and a stronger corruption should lower it more."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..world import COLOURS
from ..data.synthetic import ObjectTrack, render, step_physics, step_world, touching
from .law import Law


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


def blend_overlaps(tracks: list[ObjectTrack], size: int) -> np.ndarray:
    """Where objects overlap they are drawn half and half (a two-tone blob) instead of one in front."""
    frames = len(tracks[0].positions)
    alone = [render([t], frames, size).astype(np.float32) for t in tracks]
    covered = [a.max(axis=-1, keepdims=True) > 0 for a in alone]
    count = np.maximum(sum(c.astype(np.float32) for c in covered), 1)
    mixed = sum(alone) / count                          # overlaps: the mean of the colours drawn there
    return np.clip(np.round(mixed), 0, 255).astype(np.uint8)


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


# The physics world's laws broken one at a time: the clip is simulated again from the same first
# positions and velocities with one rule changed, so that rule is the only violation.

def resimulate(tracks: list[ObjectTrack], size: int, law: Law, resolve=None, **changes) -> np.ndarray:
    """Render the clip that `tracks` (made under `law`, in pixels) become with `changes` to the law
    (e.g. gravity=0.0) or an unlawful collision rule `resolve` (data.synthetic.step_world's)."""
    frames = len(tracks[0].positions)
    # a track's first velocity already holds the first frame's gravity: start from the one before it
    starts = [replace(t, positions=t.positions[:1], velocities=t.velocities[:1] - [0.0, law.gravity]) for t in tracks]
    new = replace(law, **changes)
    moved = step_world(starts, size, frames, new.gravity, new.restitution,
                       new.collision_restitution if new.collisions else None, resolve)
    return render(moved, frames, size)


def reverse_gravity(tracks: list[ObjectTrack], size: int, law: Law) -> np.ndarray:
    """Objects fall upwards."""
    return resimulate(tracks, size, law, gravity=-law.gravity)


def remove_gravity(tracks: list[ObjectTrack], size: int, law: Law) -> np.ndarray:
    """Objects float: constant velocity between bounces."""
    return resimulate(tracks, size, law, gravity=0.0)


def lose_energy(tracks: list[ObjectTrack], size: int, law: Law, restitution: float = 0.5) -> np.ndarray:
    """Wall and floor bounces keep only `restitution` of the speed, in a world that keeps all of it."""
    return resimulate(tracks, size, law, restitution=restitution)


def pass_through(tracks: list[ObjectTrack], size: int, law: Law) -> np.ndarray:
    """Objects pass through one another instead of colliding."""
    return resimulate(tracks, size, law, collisions=False)


def no_momentum_exchange(tracks: list[ObjectTrack], size: int, law: Law) -> np.ndarray:
    """Colliding objects bounce apart as if each hit a wall: each reverses its own velocity along the
    line of centres, keeping its speed, and no momentum passes between them."""
    return resimulate(tracks, size, law, resolve=_bounce_apart)


def _bounce_apart(p, v, tracks, restitution):
    pairs = []
    for a, b, n, overlap in touching(p, tracks):
        for k, towards in ((a, 1.0), (b, -1.0)):       # each object's speed into the other reverses
            into = towards * float(np.dot(v[k], n))
            if into > 0:
                v[k] -= 2 * towards * into * n
        p[a] -= overlap / 2 * n
        p[b] += overlap / 2 * n
        pairs.append((a, b))
    return pairs
