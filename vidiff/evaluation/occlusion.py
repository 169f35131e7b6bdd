"""Occlusion, the failure a viewer sees first: where two objects meet, the world draws one in front of
the other (an opaque occlusion); a model that has not learned this blends them into one two-tone blob.

  blend_share   share of the frames in which two prompted objects meet (touch, overlap or blend) that
                hold a blend of their two colours thicker than an edge: a pixel that mixes both
                colours (each at least MIN_SHARE) in a 2x2 block of such pixels. The truth has none:
                its only mixed pixels are the one-pixel seam where two anti-aliased outlines meet.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..world import COLOURS
from ..data.objects import Track

MIN_SHARE = 0.25        # of each colour in a mixed pixel
MAX_RESIDUAL = 40.0     # RGB distance from the best mixture of the two colours (model noise)


def mixed_pixels(frame: np.ndarray, first: str, second: str) -> np.ndarray:
    """(H, W) bool: pixels that are a mixture a * first + b * second (over black) with a, b >= MIN_SHARE."""
    basis = np.array([COLOURS[first], COLOURS[second]], np.float64).T          # (3, 2)
    pixels = frame.reshape(-1, 3).astype(np.float64)
    weights = np.linalg.lstsq(basis, pixels.T, rcond=None)[0].T                # (N, 2)
    residual = np.linalg.norm(pixels - weights @ basis.T, axis=1)
    mixed = (weights.min(axis=1) >= MIN_SHARE) & (residual <= MAX_RESIDUAL)
    return mixed.reshape(frame.shape[:2])


def blended(frame: np.ndarray, first: str, second: str) -> bool:
    """A blend thicker than a seam: a 2x2 block of mixed pixels (a seam between two outlines is one
    pixel wide)."""
    return bool(ndimage.binary_erosion(mixed_pixels(frame, first, second), structure=np.ones((2, 2))).any())


def meeting(a: Track, b: Track, t: int) -> bool:
    """Objects a and b touch in frame t: one of them borders another object there, and both are there
    (or one is gone, covered by the other)."""
    da, db = a.detections[t], b.detections[t]
    return (da is not None and da.occluded) or (db is not None and db.occluded)


def blend_share(video: np.ndarray, tracks: dict[str, Track], colours: list[str]) -> tuple[float, int]:
    """(share of meeting frames that are blended, number of meeting frames) over every pair of the
    prompted `colours`; NaN when no two objects meet."""
    meet = blend = 0
    for i, first in enumerate(colours):
        for second in colours[i + 1:]:
            for t, frame in enumerate(video):
                mixed = blended(frame, first, second)
                touching = first in tracks and second in tracks and meeting(tracks[first], tracks[second], t)
                meet += mixed or touching
                blend += mixed
    return (blend / meet if meet else float("nan")), meet
