"""What a viewer sees in one video of the synthetic world, object by object, and whether they would
call it correct. Averages hide single failures (a clip whose object jumps 15 px once still scores a
fine mean), so each video gets these counts and one pass/fail verdict.

  max_jump_px     the largest move of a prompted object between consecutive frames in which it is
                  clear of the others (objects of this world move at most 0.07 frame sizes a frame)
  missing_frames  share of frames in which some prompted object is not there with its prompted shape,
                  and not inside another object either (partly covered objects count as there)
  merged_frames   share of frames in which a missing prompted object's last place lies inside another
                  object: the two are one blob, or one passes behind the other (which the ground
                  truth does for a few frames at a time)
  extra_frames    share of frames with an object of an unprompted colour, or a prompted colour twice
  shape_changes   prompted objects whose shape differs from the prompted one in over 15 % of the
                  frames in which they are clear of the others
  viewer_pass     none of: a jump over 0.125 frame sizes, missing or extra objects in over 10 % of
                  frames, merged in over 30 %, a shape change. Calibrated on 100 ground-truth clips
                  (tests/test_evaluation.py): a tracker error must not fail the truth.
"""
from __future__ import annotations

import numpy as np

from ..data.objects import Detection, Track

MAX_JUMP = 0.125          # of the frame size: 4 px at 32, ~1.8x the fastest object of the world
MAX_MISSING = 0.10        # share of frames with a prompted object missing (and not behind another)
MAX_EXTRA = 0.10          # share of frames with an extra or duplicated object
MAX_MERGED = 0.30         # share of frames with a prompted object inside another: passing behind is brief
MAX_WRONG_SHAPE = 0.15    # share of an object's clear frames with another shape (2 of 16 frames: classifier noise)


def _present_as(det: Detection | None, shape: str) -> bool:
    """The object is there as prompted: with its shape, or covered by another (shape unreadable)."""
    return det is not None and (det.occluded or det.shape == shape)


def _extra(detections: list[Detection], want: set[str]) -> bool:
    colours = [d.colour for d in detections]
    if set(colours) - want:
        return True
    return any(colours.count(c) > 1 and not all(d.occluded for d in detections if d.colour == c) for c in want)


def _largest_jump(tr: Track) -> float:
    clear = [d if d is not None and not d.occluded else None for d in tr.detections]
    jumps = [np.linalg.norm(b.centroid - a.centroid) for a, b in zip(clear, clear[1:]) if a is not None and b is not None]
    return float(max(jumps, default=0.0))


def _merged(tr: Track | None, per_frame: list[list[Detection]], t: int) -> bool:
    """Whether prompted object `tr`, missing at frame t, was last seen where another object now is."""
    if tr is None:
        return False
    seen = [d for d in tr.detections[:t] if d is not None]
    if not seen:
        return False
    last = seen[-1]
    radius = lambda d: np.sqrt(d.area / np.pi)
    return any(d.colour != tr.colour and np.linalg.norm(d.centroid - last.centroid) < radius(d) + radius(last)
               for d in per_frame[t])


def viewer_checks(tracks: dict[str, Track], per_frame: list[list[Detection]], expected: list[tuple[str, str]],
                  size: int) -> dict:
    frames = len(per_frame)
    want = {colour for colour, _ in expected}
    absent = [[not _present_as(tracks[c].detections[t] if c in tracks else None, s) for c, s in expected]
              for t in range(frames)]
    merged = [any(a and _merged(tracks.get(c), per_frame, t) for a, (c, _) in zip(absent[t], expected))
              for t in range(frames)]
    missing = [any(a and not _merged(tracks.get(c), per_frame, t) for a, (c, _) in zip(absent[t], expected))
               for t in range(frames)]
    extra = [_extra(dets, want) for dets in per_frame]
    jump, shape_changes = 0.0, 0
    for colour, shape in expected:
        tr = tracks.get(colour)
        if tr is None:
            continue
        jump = max(jump, _largest_jump(tr))
        clear = [d for d in tr.detections if d is not None and not d.occluded]
        if clear and np.mean([d.shape != shape for d in clear]) > MAX_WRONG_SHAPE:
            shape_changes += 1
    result = {"max_jump_px": jump, "missing_frames": float(np.mean(missing)), "merged_frames": float(np.mean(merged)),
              "extra_frames": float(np.mean(extra)), "shape_changes": shape_changes}
    result["viewer_pass"] = bool(jump <= MAX_JUMP * size and result["missing_frames"] <= MAX_MISSING
                                 and result["merged_frames"] <= MAX_MERGED and result["extra_frames"] <= MAX_EXTRA
                                 and shape_changes == 0)
    return result
