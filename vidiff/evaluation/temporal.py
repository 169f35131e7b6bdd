"""Temporal consistency of any video (real footage too), after motion compensation with optical flow.

For each consecutive pair, Farneback flow (OpenCV) warps frame t onto frame t+1; pixels where
forward and backward flow disagree are occlusions and are left out (Lai et al. 2018, "Learning
Blind Video Temporal Consistency").
  warping_error  mean |I_{t+1} - warp(I_t)| over non-occluded pixels, in [0, 1] intensity units
  flicker        mean |sum(I_{t+1} - warp(I_t))| / max(sum(warp(I_t)), floor) over the same pixels: the
                 relative, frame-wide brightness change that motion cannot explain (0 = none, 0.1 = 10 %).
                 The floor is a frame 2 % lit: without it a near-black frame divides by almost nothing
                 and one such video (flicker 8.5) dominated a mean of 24.
"""
from __future__ import annotations

import cv2
import numpy as np

FLOW_UPSCALE_BELOW = 64   # flow on tiny frames is unstable; enlarge them first
FLICKER_FLOOR = 0.02      # the brightness a frame is divided by is at least this share of full white


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=2, winsize=9, iterations=3,
                                        poly_n=5, poly_sigma=1.1, flags=0)


def _warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = flow.shape[:2]
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=-1).astype(np.float32)
    return cv2.remap(image, grid + flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def temporal_scores(video: np.ndarray) -> dict:
    """video: (T, H, W, 3) uint8 -> {'warping_error', 'flicker'} (NaN for one frame)."""
    if len(video) < 2:
        return {"warping_error": float("nan"), "flicker": float("nan")}
    scale = max(1, -(-FLOW_UPSCALE_BELOW // min(video.shape[1:3])))
    frames = [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
              for f in video]
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    warp_errors, flickers = [], []
    for t in range(len(frames) - 1):
        back = _flow(grey[t + 1], grey[t])        # for each pixel of t+1, where it was in t
        fwd = _flow(grey[t], grey[t + 1])
        warped = _warp(frames[t], back)
        # forward-backward check: following back then fwd should return to the start
        round_trip = back + _warp(fwd, back)
        valid = (np.linalg.norm(round_trip, axis=-1) < 0.5 + 0.05 * np.linalg.norm(back, axis=-1))
        diff = frames[t + 1] - warped
        if valid.any():
            warp_errors.append(float(np.abs(diff[valid]).mean()))
            floor = FLICKER_FLOOR * warped[valid].size
            flickers.append(float(abs(diff[valid].sum()) / max(warped[valid].sum(), floor)))
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")
    return {"warping_error": mean(warp_errors), "flicker": mean(flickers)}
