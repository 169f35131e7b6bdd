"""Scores of one video against its caption and the synthetic world's physics (no neural network).

  permanence      share of frames whose objects are exactly the prompted ones: each prompted colour
                  once, nothing else (vanishing, duplicated, extra or flickering objects lower it);
                  an object cut in two by an object passing in front of it is not a duplicate
  fidelity        share of prompted (colour, shape) pairs found with that shape, over the larger of
                  the prompted and found object counts (extra objects lower it)
  shape_stability share of frames in which a track keeps its majority shape
  size_stability  1 - coefficient of variation of a track's area over time (clipped to [0, 1])
                  (shape, size and motion use only frames where the object touches no other object)
  physics_error   RMS distance (px) between a track and its best-fit constant-velocity + elastic-bounce
                  (+ gravity) trajectory
  moving          whether any object moves more than 1 px: a frozen video must not look consistent
"""
from __future__ import annotations

import numpy as np

from ..world import parse_caption
from .objects import track
from .physics import fit_physics

MIN_PRESENCE = 0.5   # a track counts as a found object if present in at least half of the frames
MOVING_PX = 1.0


def frame_matches(detections, want: set[str]) -> bool:
    """Every prompted colour present once (or in pieces only where occluded) and no other colour."""
    colours = [d.colour for d in detections]
    if set(colours) != want:
        return False
    return all(colours.count(c) == 1 or all(d.occluded for d in detections if d.colour == c) for c in want)


def score_video(video: np.ndarray, caption: str, gravity_px: float = 0.0) -> dict:
    """video: (T, H, W, 3) uint8. gravity_px: pixels per frame^2 (DataConfig.gravity * size)."""
    frames, size = video.shape[0], video.shape[1]
    expected = parse_caption(caption)
    tracks, per_frame = track(video)
    want = {colour for colour, _ in expected}
    permanence = np.mean([frame_matches(dets, want) for dets in per_frame])

    found = {c: tr for c, tr in tracks.items() if tr.present().mean() >= MIN_PRESENCE}
    matched = sum(1 for colour, shape in expected if colour in found and found[colour].majority_shape() == shape)
    fidelity = matched / max(len(expected), len(found), 1)

    shape_stab, size_stab, physics, moving = [], [], [], False
    for tr in found.values():
        dets = tr.clear()
        if not dets:
            continue
        majority = tr.majority_shape()
        shape_stab.append(np.mean([d.shape == majority for d in dets]))
        areas = np.array([d.area for d in dets])
        size_stab.append(float(np.clip(1 - areas.std() / areas.mean(), 0, 1)))
        usable = tr.usable()
        positions = np.array([d.centroid if u else (np.nan, np.nan) for d, u in zip(tr.detections, usable)])
        centres = positions[usable]
        moving |= bool(np.max(np.linalg.norm(centres - centres[0], axis=1)) > MOVING_PX)
        error, _ = fit_physics(positions, usable, tr.bounding_radius(), size, gravity_px)
        if np.isfinite(error):
            physics.append(error)
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")   # NaN: nothing to measure
    return {
        "caption": caption, "frames": frames,
        "permanence": float(permanence), "fidelity": float(fidelity),
        "shape_stability": mean(shape_stab), "size_stability": mean(size_stab),
        "physics_error_px": mean(physics), "moving": moving,
        "objects_found": len(found), "objects_prompted": len(expected),
    }
