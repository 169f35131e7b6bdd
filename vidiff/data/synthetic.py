"""The bouncing-shapes world: seeded text-video clips with per-frame ground truth.

Each clip holds 1-N shapes (circle, square, triangle) of distinct palette colours on a black
background, moving at constant velocity (plus optional gravity) with elastic reflections off the
walls. Objects do not collide with one another; later objects are drawn on top. Every quantity is
in pixels, x to the right and y downwards, positions at the object's centre; an object touches a
wall when its bounding circle (radius r) does, whatever its shape.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..config import DataConfig, ShapesConfig
from ..world import COLOURS, make_caption
from .io import from_uint8

SUPERSAMPLE = 4  # render at 4x and average: anti-aliased edges, sub-pixel motion stays visible
SQUARE_HALF_SIDE = 0.85   # of r: a square of about the circle's area
TRIANGLE_FLAT = 0.5       # an equilateral triangle pointing up, circumradius r


@dataclass
class ObjectTrack:
    shape: str
    colour: str
    radius: float
    positions: np.ndarray   # (T, 2) centre (x, y) at each frame
    velocities: np.ndarray  # (T, 2) velocity used to leave that frame


MAX_DRAWS = 200
STRIDE_STREAM = 1   # the third seed word of the generator that draws a clip's frame stride
IMAGE_STREAM = 2    # ... and of the stills mixed into video training (data.shapes.image_every)


def subsample(tracks: list[ObjectTrack], stride: int) -> list[ObjectTrack]:
    """Every `stride`-th frame of each track: the clip a camera at 1/stride of the frame rate sees
    (velocities become the mean displacement over the stride, bounces included)."""
    if stride == 1:
        return tracks
    out = []
    for t in tracks:
        positions = t.positions[::stride]
        steps = np.diff(t.positions, axis=0, append=t.positions[-1:] + t.velocities[-1:])
        velocities = np.add.reduceat(steps, np.arange(0, len(steps), stride))[: len(positions)]
        out.append(ObjectTrack(t.shape, t.colour, t.radius, positions, velocities))
    return out


def simulate(rng: np.random.Generator, world: ShapesConfig, frames: int, size: int) -> list[ObjectTrack]:
    """Draw the objects of one clip and integrate their motion. With world.min_gap > 0 the clip is
    redrawn (up to MAX_DRAWS times, then the last draw is kept) until no two objects come closer than
    min_gap frame sizes edge to edge in any frame: clips where objects never overlap, so a model is not
    taught that two objects may merge. min_gap 0 draws exactly as before."""
    for _ in range(MAX_DRAWS):
        tracks = _draw(rng, world, frames, size)
        if world.min_gap <= 0 or min_gap(tracks) >= world.min_gap * size:
            break
    return tracks


def min_gap(tracks: list[ObjectTrack]) -> float:
    """Smallest edge-to-edge distance (pixels, bounding circles) between two objects over the clip."""
    gaps = [np.linalg.norm(a.positions - b.positions, axis=1).min() - a.radius - b.radius
            for i, a in enumerate(tracks) for b in tracks[i + 1:]]
    return float(min(gaps, default=np.inf))


def _draw(rng: np.random.Generator, world: ShapesConfig, frames: int, size: int) -> list[ObjectTrack]:
    n = int(rng.integers(world.min_objects, world.max_objects + 1))
    colours = rng.choice(world.colours, size=n, replace=False)
    tracks = []
    for colour in colours:
        shapes = [s for s in world.shapes if f"{colour} {s}" not in world.exclude] if world.exclude else world.shapes
        shape = str(rng.choice(shapes))
        r = float(rng.uniform(*world.radius)) * size
        p = rng.uniform(r, size - r, size=2)
        angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(*world.speed) * size
        v = speed * np.array([np.cos(angle), np.sin(angle)])
        positions, velocities = step_physics(p, v, r, size, frames, world.gravity * size)
        tracks.append(ObjectTrack(shape, str(colour), r, positions, velocities))
    return tracks


def step_physics(p: np.ndarray, v: np.ndarray, r: float, size: float, frames: int,
                 gravity: float) -> tuple[np.ndarray, np.ndarray]:
    """Integrate one object: gravity, then move, then reflect elastically off the walls."""
    positions, velocities = np.zeros((frames, 2)), np.zeros((frames, 2))
    p, v = p.astype(float).copy(), v.astype(float).copy()
    lo, hi = r, size - r
    for i in range(frames):
        positions[i] = p
        v[1] += gravity
        velocities[i] = v
        p = p + v
        for axis in range(2):  # a reflection mirrors the overshoot back inside the box
            if p[axis] < lo:
                p[axis], v[axis] = 2 * lo - p[axis], -v[axis]
            elif p[axis] > hi:
                p[axis], v[axis] = 2 * hi - p[axis], -v[axis]
    return positions, velocities


def shape_mask(shape: str, cx: float, cy: float, r: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Boolean coverage of a shape centred at (cx, cy) on sample coordinates xs, ys (pixels)."""
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        half = SQUARE_HALF_SIDE * r
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "triangle":  # apex at (0, -r), base at y = r/2; sides have slope +-sqrt(3)
        return (dy <= TRIANGLE_FLAT * r) & (np.sqrt(3) * np.abs(dx) <= dy + r)
    raise ValueError(f"unknown shape '{shape}'")


def render(tracks: list[ObjectTrack], frames: int, size: int) -> np.ndarray:
    """Draw the clip: (T, H, W, 3) uint8 on a black background."""
    grid = (np.arange(size * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    xs, ys = np.meshgrid(grid, grid)
    video = np.zeros((frames, size * SUPERSAMPLE, size * SUPERSAMPLE, 3), np.float32)
    for track in tracks:
        colour = np.array(COLOURS[track.colour], np.float32)
        for t in range(frames):
            mask = shape_mask(track.shape, *track.positions[t], track.radius, xs, ys)
            video[t][mask] = colour
    video = video.reshape(frames, size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(2, 4))
    return np.round(video).astype(np.uint8)


def caption(tracks: list[ObjectTrack]) -> str:
    return make_caption([(t.colour, t.shape) for t in tracks])


class ShapesDataset(torch.utils.data.Dataset):
    """Clip i is a pure function of (seed, i): any index can be regenerated, so training can resume
    at an exact position without storing data-loader state."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg
        # the plentiful images of joint training: stills of the whole world (no held-out pairs, no clip limit)
        self.stills = replace(cfg.shapes, exclude=[], num_clips=0, strides=[1])

    def __len__(self) -> int:
        return self.cfg.shapes.num_clips or 2**62

    def __getitem__(self, index: int) -> dict:
        strides = self.cfg.shapes.strides
        # its own generator, so a world of one stride draws exactly the clips it always did; drawn before
        # the wrap-around of num_clips, so a fixed clip is seen at every stride
        stride = int(np.random.default_rng([self.cfg.seed, index, STRIDE_STREAM]).choice(strides)) if len(strides) > 1 \
            else strides[0]
        if self.cfg.shapes.num_clips:
            index %= self.cfg.shapes.num_clips
        rng = np.random.default_rng([self.cfg.seed, index])
        tracks = subsample(simulate(rng, self.cfg.shapes, (self.cfg.frames - 1) * stride + 1, self.cfg.size), stride)
        frames = render(tracks, self.cfg.frames, self.cfg.size)
        video = from_uint8(frames)                                             # (C, T, H, W)
        return {
            "video": video,
            "caption": caption(tracks),
            "stride": stride,
            "tracks": tracks,
        }

    def item(self, micro_index: int, position: int, batch_size: int) -> dict:
        """Sample `position` of global micro-batch `micro_index` (the interface the trainer uses); with
        data.shapes.image_every n, micro-batches n-1, 2n-1, ... are stills (1-frame clips)."""
        every = self.cfg.shapes.image_every
        if every and micro_index % every == every - 1:
            return self.still(micro_index * batch_size + position)
        return self[micro_index * batch_size + position]

    def cache_keys(self, batch: dict) -> list:
        """Keys under which a batch's clips recur unchanged (a finite set: shapes.num_clips), for a cache
        of their latents; [] when they do not (an endless stream, stills). A clip differs per stride."""
        n = self.cfg.shapes.num_clips
        if not n or batch["video"].shape[2] != self.cfg.frames:
            return []
        return [(i % n, s) for i, s in zip(batch["indices"], batch.get("stride", [1] * len(batch["indices"])))]

    def still(self, index: int) -> dict:
        """A captioned image of the whole world (a 1-frame clip), a pure function of (seed, index)."""
        rng = np.random.default_rng([self.cfg.seed, index, IMAGE_STREAM])
        tracks = simulate(rng, self.stills, 1, self.cfg.size)
        video = from_uint8(render(tracks, 1, self.cfg.size))
        return {"video": video, "caption": caption(tracks), "stride": 1, "tracks": tracks}


def collate(items: list[dict]) -> dict:
    """Stack the videos; every other key becomes a list."""
    return {key: torch.stack([it[key] for it in items]) if key == "video" else [it[key] for it in items]
            for key in items[0]}
