"""How well a track follows the synthetic world's physics: constant velocity (plus optional gravity)
with wall reflections (elastic, or keeping the restitution share of the speed), fitted to the
observed centroids; the residual is the error in pixels."""
from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from ..data.synthetic import step_physics


def trajectory(params: np.ndarray, size: float, frames: int, gravity: float,
               restitution: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """params = (x0, y0, vx, vy, radius): the radius sets where the walls reflect the centre.
    Returns (T, 2) positions and the velocities that leave them."""
    return step_physics(params[:2], params[2:4], params[4], size, frames, gravity, restitution)


def fit_physics(positions: np.ndarray, present: np.ndarray, radius: float, size: float,
                gravity: float = 0.0, restitution: float = 1.0) -> tuple[float, np.ndarray, np.ndarray]:
    """Fit initial position, velocity and bounding radius (starting from `radius`, the estimate from
    the object's area, which occlusion and anti-aliasing bias) to the observed (T, 2) positions.

    Returns (RMS error in pixels over the present frames, fitted positions, their velocities). Several starts (from
    the first, middle and last frame pairs) avoid local minima created by the reflections. The fit
    minimises the reported RMS itself, so more violation can only mean more error.
    """
    frames = len(positions)
    idx = np.flatnonzero(present)
    if len(idx) < 3:
        return float("nan"), positions, np.full_like(positions, np.nan)
    obs = positions[idx]

    def residual(params):
        return (trajectory(params, size, frames, gravity, restitution)[0][idx] - obs).ravel()

    starts = []
    for a, b in ((0, 1), (len(idx) // 2 - 1, len(idx) // 2), (len(idx) - 2, len(idx) - 1)):
        v = (obs[b] - obs[a]) / (idx[b] - idx[a])
        starts.append(np.concatenate([obs[a] - v * idx[a], v, [radius]]))   # back-extrapolated start
        starts.append(np.concatenate([obs[0], v, [radius]]))
    best = None
    for x0 in starts:
        x0[:2] = np.clip(x0[:2], radius, size - radius)
        lower = [-np.inf, -np.inf, -np.inf, -np.inf, 0.5 * radius]
        upper = [np.inf, np.inf, np.inf, np.inf, min(1.5 * radius, size / 2)]
        fit = least_squares(residual, x0, bounds=(lower, upper), diff_step=1e-3,
                            max_nfev=400)
        if best is None or fit.cost < best.cost:
            best = fit
    traj, velocities = trajectory(best.x, size, frames, gravity, restitution)
    rms = float(np.sqrt(np.mean(np.sum((traj[idx] - obs) ** 2, axis=1))))
    return rms, traj, velocities
