"""The bouncing-shapes world: seeded text-video clips with per-frame ground truth.

Each clip holds 1-N shapes (circle, square, triangle) of distinct palette colours on a black
background, moving at constant velocity (plus optional gravity), reflected off the walls (elastic, or
losing speed by a restitution coefficient). By default objects pass through one another and later
objects are drawn on top; with shapes.collisions they bounce off each other as discs of their bounding
circles, with momentum conserved and masses proportional to their areas. Every quantity is in
pixels, x to the right and y downwards, positions at the object's centre; an object touches a wall
(or another object) when its bounding circle (radius r) does, whatever its shape.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage

from ..config import DataConfig, ShapesConfig
from ..world import COLOURS, make_caption
from .io import from_uint8

SUPERSAMPLE = 4  # render at 4x and average: anti-aliased edges, sub-pixel motion stays visible
SQUARE_HALF_SIDE = 0.85   # of r: a square of about the circle's area
TRIANGLE_FLAT = 0.5       # an equilateral triangle pointing up, circumradius r


# area of each shape per unit squared bounding radius r: the mass of a collision, and how the
# evaluation turns a measured area back into a radius
AREA_PER_R2 = {"circle": np.pi, "square": (2 * SQUARE_HALF_SIDE) ** 2, "triangle": 3 * np.sqrt(3) / 4}


@dataclass
class ObjectTrack:
    shape: str
    colour: str
    radius: float
    positions: np.ndarray   # (T, 2) centre (x, y) at each frame
    velocities: np.ndarray  # (T, 2) velocity used to leave that frame (before a collision in that step)
    collisions: tuple[int, ...] = ()   # frames after whose move this object hit another (shapes.collisions)

    @property
    def mass(self) -> float:
        return AREA_PER_R2[self.shape] * self.radius ** 2


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
        collisions = tuple(f // stride for f in t.collisions)
        out.append(ObjectTrack(t.shape, t.colour, t.radius, positions, velocities, collisions))
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
        for _ in range(MAX_DRAWS if world.collisions else 0):    # solid objects start apart (other worlds: as before)
            if all(np.hypot(*(p - t.positions[0])) >= r + t.radius for t in tracks):
                break
            p = rng.uniform(r, size - r, size=2)
        angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(*world.speed) * size
        v = speed * np.array([np.cos(angle), np.sin(angle)])
        tracks.append(ObjectTrack(shape, str(colour), r, p[None], v[None]))     # the start; integrated below
    return step_world(tracks, size, frames, world.gravity * size, world.restitution,
                      world.collision_restitution if world.collisions else None)


def step_world(starts: list[ObjectTrack], size: float, frames: int, gravity: float, restitution: float = 1.0,
               collisions: float | None = None, resolve=None) -> list[ObjectTrack]:
    """Integrate the objects from their first position and velocity, a frame at a time: gravity, then
    move, then reflect off the walls (restitution: the share of the normal speed kept), then, with
    `collisions` (their restitution), resolve contacts between bounding circles (`resolve`, default
    `collide`: the evaluation's corruptions pass unlawful ones). One object's arithmetic is the same
    whether or not others are there, so a world without collisions draws exactly what it always has."""
    resolve = resolve or collide
    p = [t.positions[0].astype(float).copy() for t in starts]
    v = [t.velocities[0].astype(float).copy() for t in starts]
    positions, velocities = np.zeros((len(starts), frames, 2)), np.zeros((len(starts), frames, 2))
    hits: list[list[int]] = [[] for _ in starts]
    for i in range(frames):
        for k, t in enumerate(starts):
            positions[k, i] = p[k]
            v[k][1] += gravity
            velocities[k, i] = v[k]
            p[k] = p[k] + v[k]
            reflect(p[k], v[k], t.radius, size - t.radius, restitution)
        if collisions is not None:
            for a, b in resolve(p, v, starts, collisions):
                hits[a].append(i)
                hits[b].append(i)
    return [ObjectTrack(t.shape, t.colour, t.radius, positions[k], velocities[k], tuple(hits[k]))
            for k, t in enumerate(starts)]


def step_physics(p: np.ndarray, v: np.ndarray, r: float, size: float, frames: int, gravity: float,
                 restitution: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One object alone between the walls: its (T, 2) positions and velocities."""
    start = ObjectTrack("circle", "", r, np.asarray(p, float)[None], np.asarray(v, float)[None])
    (track,) = step_world([start], size, frames, gravity, restitution)
    return track.positions, track.velocities


def reflect(p: np.ndarray, v: np.ndarray, lo: float, hi: float, restitution: float) -> None:
    """In place: a wall mirrors the overshoot back inside the box and reverses the normal velocity,
    both scaled by the restitution (1: elastic, the exact mirror)."""
    for axis in range(2):
        for wall, outside in ((lo, p[axis] < lo), (hi, p[axis] > hi)):
            if outside:
                if restitution == 1.0:
                    p[axis], v[axis] = 2 * wall - p[axis], -v[axis]
                else:
                    p[axis], v[axis] = wall + restitution * (wall - p[axis]), -restitution * v[axis]
                break


def touching(p: list[np.ndarray], tracks: list[ObjectTrack]):
    """Each pair (a, b) whose bounding circles overlap, with the unit normal from a to b and the depth."""
    for a in range(len(p)):
        for b in range(a + 1, len(p)):
            d = p[b] - p[a]
            dist, reach = float(np.hypot(*d)), tracks[a].radius + tracks[b].radius
            if dist < reach and dist != 0.0:
                yield a, b, d / dist, reach - dist


def collide(p: list[np.ndarray], v: list[np.ndarray], tracks: list[ObjectTrack], restitution: float) -> list[tuple[int, int]]:
    """In place: every pair of overlapping, approaching bounding circles exchanges momentum along the
    line of centres (Newton's law of restitution: the normal relative speed reverses, times the
    restitution; masses proportional to area, so total momentum is conserved), and the overlap is
    undone in inverse proportion to mass. Returns the pairs that collided."""
    pairs = []
    for a, b, normal, overlap in touching(p, tracks):
        closing = float(np.dot(v[a] - v[b], normal))
        ma, mb = tracks[a].mass, tracks[b].mass
        if closing > 0:                               # approaching: exchange momentum
            impulse = (1 + restitution) * closing * ma * mb / (ma + mb)
            v[a] -= impulse / ma * normal
            v[b] += impulse / mb * normal
            pairs.append((a, b))
        p[a] -= overlap * mb / (ma + mb) * normal     # undo the overlap, the lighter object moving more
        p[b] += overlap * ma / (ma + mb) * normal
    return pairs


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


def overlap_mask(tracks: list[ObjectTrack], frames: int, size: int) -> np.ndarray:
    """(T, H, W) bool: pixels covered by two or more objects, and one pixel around them (where an
    occlusion's outline is drawn): the pixels a model that blends objects gets wrong."""
    grid = np.arange(size) + 0.5
    xs, ys = np.meshgrid(grid, grid)
    out = np.zeros((frames, size, size), bool)
    for t in range(frames):
        count = sum(shape_mask(tr.shape, *tr.positions[t], tr.radius, xs, ys).astype(int) for tr in tracks)
        out[t] = ndimage.binary_dilation(count >= 2) if len(tracks) > 1 else False
    return out


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
