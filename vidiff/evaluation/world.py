"""Scores of one video against its caption and the synthetic world's physics (no neural network).

  permanence      share of frames whose objects are exactly the prompted ones: each prompted colour
                  once and with its prompted shape, nothing else (vanishing, duplicated, extra,
                  flickering or shape-shifting objects lower it); an object cut in two by an object
                  passing in front of it is not a duplicate, and its shape is not judged while covered
  fidelity        share of prompted (colour, shape) pairs found with that shape, over the larger of
                  the prompted and found object counts (extra objects lower it)
  shape_stability share of frames in which a track keeps its majority shape
  size_stability  1 - coefficient of variation of a track's area over time (clipped to [0, 1])
                  (shape, size and motion use only frames where the object touches no other object)
  physics_error   RMS distance (px) between a track and its best fit of the world's law (constant
                  velocity, gravity, wall bounces; split at contacts in a world with collisions); the
                  law's other measures (gravity, velocities, collisions, energy): law.py
  moving          whether any object moves more than 1 px: a frozen video must not look consistent
  blend_share     share of the frames where two objects meet that blend them into one two-tone blob
                  (occlusion.py; the world draws one in front of the other)
Pixels are those of the world's frame size (32 for the shipped recipes), whatever the file's scale.
Per-video viewer checks and the pass/fail verdict: viewer.py.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..world import parse_caption
from ..data.objects import track
from .law import Law, law_scores
from .occlusion import blend_share
from .viewer import viewer_checks

MIN_PRESENCE = 0.5   # a track counts as a found object if present in at least half of the frames
MOVING_PX = 1.0


def frame_matches(detections, expected: list[tuple[str, str]]) -> bool:
    """Every prompted object present once (or in pieces only where occluded) with its prompted shape
    (unless another object covers part of it), and no other colour."""
    colours = [d.colour for d in detections]
    if set(colours) != {c for c, _ in expected}:
        return False
    for colour, shape in expected:
        mine = [d for d in detections if d.colour == colour]
        if len(mine) > 1 and not all(d.occluded for d in mine):
            return False
        if not mine[0].occluded and mine[0].shape != shape:
            return False
    return True


def at_world_size(video: np.ndarray, size: int | None) -> np.ndarray:
    """The video at the world's frame size (area-averaged), so pixels mean the same whatever the file's
    scale: `vidiff generate` writes 4x enlarged files, and a jump of 4 px at 128 is 1 px at 32."""
    if size is None or video.shape[1:3] == (size, size):
        return video
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in video])


def score_video(video: np.ndarray, caption: str, gravity_px: float = 0.0, size: int | None = None,
                law: Law | None = None, known: int = 0) -> dict:
    """video: (T, H, W, 3) uint8, measured at `size` x `size` (the world's frame size; default: the
    video's own). law: the world's dynamics at that size (Law.of(data); default: constant velocity with
    `gravity_px`, pixels per frame^2, and elastic walls). known: conditioning frames, not scored by
    velocity_error_px."""
    video = at_world_size(video, size)
    frames, size = video.shape[0], video.shape[1]
    expected = parse_caption(caption)
    tracks, per_frame = track(video)
    permanence = np.mean([frame_matches(dets, expected) for dets in per_frame])

    found = {c: tr for c, tr in tracks.items() if tr.present().mean() >= MIN_PRESENCE}
    matched = sum(1 for colour, shape in expected if colour in found and found[colour].majority_shape() == shape)
    fidelity = matched / max(len(expected), len(found), 1)

    shape_stab, size_stab, moving = [], [], False
    for tr in found.values():
        dets = tr.clear()
        if not dets:
            continue
        majority = tr.majority_shape()
        shape_stab.append(np.mean([d.shape == majority for d in dets]))
        areas = np.array([d.area for d in dets])
        size_stab.append(float(np.clip(1 - areas.std() / areas.mean(), 0, 1)))
        centres = np.array([d.centroid for d in dets])
        moving |= bool(np.max(np.linalg.norm(centres - centres[0], axis=1)) > MOVING_PX)
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")   # NaN: nothing to measure
    return {
        "caption": caption, "frames": frames,
        "permanence": float(permanence), "fidelity": float(fidelity),
        "shape_stability": mean(shape_stab), "size_stability": mean(size_stab),
        "moving": moving, **law_scores(found, law or Law(gravity_px), size, known),
        "blend_share": blend_share(video, tracks, [c for c, _ in expected])[0],
        "objects_found": len(found), "objects_prompted": len(expected),
        **viewer_checks(tracks, per_frame, expected, size),
    }
