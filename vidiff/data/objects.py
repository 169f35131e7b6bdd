"""Find the objects of the synthetic world in any video: palette segmentation, connected components,
shape by template matching, tracks by colour (colours are distinct within a clip by construction).

No neural network: every pixel takes the nearest palette colour (or the background); components
smaller than `min_area` or thinner than 3 pixels are sampling noise or blended edges and ignored; a component's shape is the template
(circle, square, triangle of the same area and centroid) it overlaps best.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .synthetic import AREA_PER_R2, shape_mask
from ..world import COLOURS, make_caption

MIN_AREA_FRACTION = 0.004   # of the frame: 4 px at 32x32
TEMPLATE_SUPERSAMPLE = 4



@dataclass
class Detection:
    colour: str
    area: float                 # pixels
    centroid: np.ndarray        # (x, y) in pixels, pixel centres at +0.5
    shape: str
    match: float                # IoU with the best shape template
    occluded: bool = False      # touches another object: its outline, area and centroid are unreliable
    clipped: bool = False       # touches the frame's edge: part of its outline may be outside the frame


@dataclass
class Track:
    colour: str
    detections: list[Detection | None] = field(default_factory=list)  # one per frame; None = absent

    def present(self) -> np.ndarray:
        return np.array([d is not None for d in self.detections])

    def usable(self) -> np.ndarray:
        """Frames to measure shape, size and motion on: those where the object touches no other
        object, or every frame where it is present if it is never clear of the others."""
        clear = np.array([d is not None and not d.occluded for d in self.detections])
        return clear if clear.any() else self.present()

    def clear(self) -> list[Detection]:
        return [d for d, ok in zip(self.detections, self.usable()) if ok]

    def majority_shape(self) -> str | None:
        """The shape most usable frames show, counting only those whole inside the frame if there are any:
        a circle cut by the edge matches a square's template better than a circle's."""
        clear = self.clear()
        shapes = [d.shape for d in clear if not d.clipped] or [d.shape for d in clear]
        return max(set(shapes), key=shapes.count) if shapes else None

    def bounding_radius(self) -> float:
        """Median bounding radius implied by the area of the majority shape."""
        areas = [d.area for d in self.clear()]
        return float(np.sqrt(np.median(areas) / AREA_PER_R2[self.majority_shape()]))


def label_colours(frame: np.ndarray, colours: list[str], min_coverage: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) index into colours, -1 for background.

    Each pixel is modelled as coverage * colour over the black background: for every palette
    colour the best coverage in [0, 1] is fitted and the colour with the smallest residual wins.
    Comparing raw RGB distances instead would send anti-aliased edges (half-covered pixels) to
    whichever darker palette colour happens to be nearest, creating phantom objects.
    """
    palette = np.array([COLOURS[c] for c in colours], np.float32)                     # (K, 3)
    pixels = frame.reshape(-1, 3).astype(np.float32)                                   # (N, 3)
    coverage = np.clip(pixels @ palette.T / (palette ** 2).sum(1), 0, 1)              # (N, K)
    residual = ((pixels[:, None] - coverage[..., None] * palette[None]) ** 2).sum(-1)  # (N, K)
    best = residual.argmin(1)
    foreground = coverage[np.arange(len(best)), best] >= min_coverage
    return np.where(foreground, best, -1).reshape(frame.shape[:2])


def classify_shape(mask: np.ndarray, centroid: np.ndarray, area: float) -> tuple[str, float]:
    """Best-matching template (same area and centroid) by IoU against the component's mask."""
    h, w = mask.shape
    grid_y, grid_x = (np.mgrid[0:h * TEMPLATE_SUPERSAMPLE, 0:w * TEMPLATE_SUPERSAMPLE] + 0.5) / TEMPLATE_SUPERSAMPLE
    best, best_iou = "circle", -1.0
    for shape, k in AREA_PER_R2.items():
        r = np.sqrt(area / k)
        cover = shape_mask(shape, centroid[0], centroid[1], r, grid_x, grid_y)
        cover = cover.reshape(h, TEMPLATE_SUPERSAMPLE, w, TEMPLATE_SUPERSAMPLE).mean(axis=(1, 3))
        iou = np.minimum(cover, mask).sum() / np.maximum(cover, mask).sum()
        if iou > best_iou:
            best, best_iou = shape, float(iou)
    return best, best_iou


def subpixel_centroid(frame: np.ndarray, region: np.ndarray, colour) -> tuple[np.ndarray, float]:
    """Centroid (x, y) and area weighted by each pixel's coverage of `colour` over the black
    background: an anti-aliased edge pixel counts by how much of it the object covers, so motion of a
    tenth of a pixel moves the centroid (the thresholded mask alone moves it in steps of whole pixels)."""
    ys, xs = np.nonzero(region)
    c = np.asarray(colour, np.float64)
    cover = np.clip(frame[ys, xs].astype(np.float64) @ c / (c @ c), 0, 1)
    return np.array([(cover * (xs + 0.5)).sum(), (cover * (ys + 0.5)).sum()]) / cover.sum(), float(cover.sum())


def detect(frame: np.ndarray, colours: list[str], min_area: float | None = None) -> list[Detection]:
    """All objects in one frame, largest first within each colour."""
    h, w, _ = frame.shape
    min_area = MIN_AREA_FRACTION * h * w if min_area is None else min_area
    labels = label_colours(frame, colours)
    found = []
    for index, colour in enumerate(colours):
        components, n = ndimage.label(labels == index)
        for k in range(1, n + 1):
            mask = components == k
            area = float(mask.sum())
            if area < min_area or not ndimage.binary_erosion(mask).any():
                continue  # specks, and the one-pixel seams where two colours' edges blend
            ring = ndimage.binary_dilation(mask, iterations=1) & ~mask
            occluded = bool(((labels[ring] >= 0) & (labels[ring] != index)).any())
            ys, xs = np.nonzero(mask)
            centroid = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
            # classify on a crop around the component: cheap and the same answer
            y0, y1, x0, x1 = max(ys.min() - 2, 0), min(ys.max() + 3, h), max(xs.min() - 2, 0), min(xs.max() + 3, w)
            shape, match = classify_shape(mask[y0:y1, x0:x1].astype(np.float32), centroid - [x0, y0], area)
            if not occluded:     # the mask's outline classifies; position and size come from the coverage
                centroid, area = subpixel_centroid(frame, mask | (ring & (labels < 0)), COLOURS[colour])
            clipped = bool(ys.min() == 0 or xs.min() == 0 or ys.max() == h - 1 or xs.max() == w - 1)
            found.append(Detection(colour, area, centroid, shape, match, occluded, clipped))
    return sorted(found, key=lambda d: (d.colour, -d.area))


def track(video: np.ndarray, colours: list[str] | None = None) -> tuple[dict[str, Track], list[list[Detection]]]:
    """Detect in every frame of (T, H, W, 3) uint8 and link by colour.

    Returns one track per colour seen (the largest component of that colour in each frame) and the
    raw per-frame detections (to count duplicates)."""
    colours = list(COLOURS) if colours is None else colours
    per_frame = [detect(frame, colours) for frame in video]
    tracks: dict[str, Track] = {}
    for detections in per_frame:
        for colour in {d.colour for d in detections}:
            tracks.setdefault(colour, Track(colour))
    for t, detections in enumerate(per_frame):
        for colour, tr in tracks.items():
            mine = [d for d in detections if d.colour == colour]
            tr.detections.append(mine[0] if mine else None)
    return tracks, per_frame


def caption_frames(video: np.ndarray, colours: list[str], shapes: list[str], max_objects: int) -> str | None:
    """A caption of the world's grammar for (T, H, W, 3) uint8 frames: each object found (by colour, its
    majority shape), limited to these colours and shapes and the `max_objects` most visible; None if
    none is found. What a text-conditioned model is told when a user gives frames but no prompt."""
    tracks, _ = track(video, [c for c in colours if c in COLOURS])
    found = [(int(t.present().sum()), colour, t.majority_shape()) for colour, t in tracks.items()]
    found = sorted(((n, c, s) for n, c, s in found if s in shapes), reverse=True)[:max_objects]
    return make_caption([(c, s) for _, c, s in found]) if found else None
