"""Whether tracked objects obey the physics world's law (data.shapes: gravity, wall and floor bounces
with a restitution, collisions between objects that conserve momentum), measured on the video alone or
against the simulator's truth. Pixels and frames at the world's frame size.

  gravity_error_px    |fitted - the world's gravity| (px/frame^2): the median vertical second difference of
                      the objects' clear centroids, away from the floor and ceiling (bounces are not gravity)
  velocity_error_px   mean |observed - lawful| velocity (px/frame) after the conditioning frames: lawful is
                      the simulator's truth where it is known (a clip continued from the truth's first
                      frames: `truth_velocity_error`), else the world's law fitted to each track between contacts
  collision_error_px  median |observed - lawful| outgoing velocity (px/frame) of two colliding objects: the
                      law (momentum conserved, masses ~ area, the world's restitution) applied to their
                      fitted states before it (median: a wall in the same frames makes the timing
                      of a few lawful ones uncertain; worlds with collisions only)
  overlap_px          the deepest overlap (px) of two objects' bounding circles in a frame where both are
                      found: solid objects touch and no more, objects passing through one another overlap
                      by up to the sum of their radii (worlds with collisions only)
  energy_drift        |E(last third) - E(first third)| / E(first third), E = sum of m (|v|^2 / 2 + g h),
                      h the height above the lowest centre: zero in an elastic world
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import DataConfig
from ..data.objects import Track
from ..data.synthetic import ObjectTrack, step_world
from .physics import fit_physics

CONTACT_MARGIN_PX = 1.0   # bounding circles this close count as touching (centroid noise, anti-aliasing)
MAX_COLLISION_GAP = 6     # frames between the incoming and outgoing velocity readings of one collision
MAX_CONTACT = 2           # frames of touching in one clean collision; longer: several at once, not read


@dataclass(frozen=True)
class Law:
    """The world's dynamics in pixels and frames."""
    gravity: float = 0.0               # px/frame^2, pulling down (+y)
    restitution: float = 1.0           # walls and floor
    collisions: bool = False           # objects bounce off one another
    collision_restitution: float = 1.0

    @classmethod
    def of(cls, data: DataConfig | None) -> Law:
        if data is None or data.type != "shapes":
            return cls()
        s = data.shapes
        return cls(s.gravity * data.size, s.restitution, s.collisions, s.collision_restitution)


@dataclass
class Observed:
    """The tracks as arrays: (K, T, 2) centroids where present (all), where clear of other objects
    (clear), and each object's majority shape, bounding radius and mass (its area in pixels)."""
    colours: list[str]
    shapes: list[str]
    all: np.ndarray
    clear: np.ndarray
    radius: np.ndarray
    mass: np.ndarray

    @classmethod
    def of(cls, tracks: dict[str, Track]) -> Observed:
        colours = [c for c, t in tracks.items() if t.majority_shape() is not None]
        nan = np.array([np.nan, np.nan])
        every = [[d.centroid if d is not None else nan for d in tracks[c].detections] for c in colours]
        clear = [[d.centroid if ok else nan for d, ok in zip(tracks[c].detections, tracks[c].usable())] for c in colours]
        radius = [tracks[c].bounding_radius() for c in colours]
        mass = [np.median([d.area for d in tracks[c].clear()]) for c in colours]   # clear() is non-empty: it has a shape
        frames = len(next(iter(tracks.values())).detections) if tracks else 0
        shape = (len(colours), frames, 2)
        return cls(colours, [tracks[c].majority_shape() for c in colours], np.array(every, float).reshape(shape), np.array(clear, float).reshape(shape),
                   np.array(radius, float), np.array(mass, float))


def contacts(obs: Observed) -> list[tuple[int, int, int, int]]:
    """Episodes (a, b, first, last frame) in which objects a and b touch: both present with bounding
    circles within CONTACT_MARGIN_PX, or one of them gone (behind or inside the other) while the episode lasts."""
    episodes = []
    for a in range(len(obs.colours)):
        for b in range(a + 1, len(obs.colours)):
            dist = np.linalg.norm(obs.all[a] - obs.all[b], axis=1)
            touching = dist <= obs.radius[a] + obs.radius[b] + CONTACT_MARGIN_PX
            hidden = np.isnan(dist)
            start = None
            for t in range(len(dist) + 1):
                on = t < len(dist) and (touching[t] or (hidden[t] and start is not None))
                if on and start is None:
                    start = t
                elif not on and start is not None:
                    last = max(s for s in range(start, t) if not hidden[s]) if not hidden[start:t].all() else start
                    episodes.append((a, b, start, last))
                    start = None
    return episodes


@dataclass
class Fit:
    """The world's law fitted to each track between its contacts: (K, T, 2) positions, the velocities
    that leave them and each fitted run's first frame (NaN / -1 where not fitted), and each track's RMS
    position error (px)."""
    positions: np.ndarray
    velocities: np.ndarray
    start: np.ndarray
    rms: list[float]


def fit_segments(obs: Observed, law: Law, size: float, episodes) -> Fit:
    """Fit the world's law to each track between its contacts (a collision changes the motion)."""
    fit = Fit(np.full_like(obs.clear, np.nan), np.full_like(obs.clear, np.nan),
              np.full(obs.clear.shape[:2], -1), [])
    for k in range(len(obs.colours)):
        usable = ~np.isnan(obs.clear[k, :, 0])
        cut = np.zeros(len(usable), bool)
        for a, b, first, last in episodes:
            if k in (a, b):
                cut[first:last + 2] = True       # the contact frames and the step out of them
        squared = []
        for s, e in runs(~cut):
            seg = usable[s:e]
            if seg.sum() < 3:
                continue
            _, traj, vel = fit_physics(obs.clear[k, s:e], seg, obs.radius[k], size, law.gravity, law.restitution)
            fit.positions[k, s:e], fit.velocities[k, s:e], fit.start[k, s:e] = traj, vel, s
            squared += list(np.sum((traj[seg] - obs.clear[k, s:e][seg]) ** 2, axis=1))
        if squared:
            fit.rms.append(float(np.sqrt(np.mean(squared))))
    return fit


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(int), [0]])))
    return list(zip(edges[::2], edges[1::2]))


def gravity_fit(obs: Observed, size: float) -> float:
    """Median vertical acceleration (px/frame^2) of clear centroids away from the floor and ceiling."""
    accel = []
    for k in range(len(obs.colours)):
        y = obs.clear[k, :, 1]
        a = y[2:] - 2 * y[1:-1] + y[:-2]
        reach = obs.radius[k] + np.abs(y[2:] - y[:-2]) + CONTACT_MARGIN_PX
        free = (y[1:-1] > reach) & (y[1:-1] < size - reach)
        accel += list(a[free & np.isfinite(a)])
    return float(np.median(accel)) if accel else float("nan")


def velocity_error(observed: np.ndarray, reference: np.ndarray, known: int = 0) -> float:
    """Mean |observed - reference| step (px/frame) over the steps into frames >= max(known, 1), where
    both are known. observed, reference: (K, T, 2) positions, NaN where unknown."""
    steps = np.diff(observed, axis=1) - np.diff(reference, axis=1)      # step t -> t+1
    errors = np.linalg.norm(steps[:, max(known, 1) - 1:], axis=-1)
    errors = errors[np.isfinite(errors)]
    return float(errors.mean()) if errors.size else float("nan")


def collision_errors(obs: Observed, law: Law, size: float, episodes, fit: Fit) -> list[float]:
    """|observed - lawful| outgoing step of each object of each collision that can be read (one clean
    contact): the two objects are simulated (walls and gravity included) from their fitted states
    in the frame before the contact to the first frame after it where both are clear again, and that
    frame's steps compared."""
    errors = []
    clear = ~np.isnan(obs.clear[..., 0])
    for a, b, first, last in episodes:
        both = clear[a] & clear[b]
        after = [t for t in range(last + 1, both.size - 1) if both[t] and both[t + 1]]
        i = first - 1                     # the last frame before the contact: both fitted there
        if last - first + 1 > MAX_CONTACT or i < 0 or not after or fit.start[a, i] < 0 or fit.start[b, i] < 0 \
                or after[0] - i > MAX_COLLISION_GAP:
            continue
        j = after[0]
        g = np.array([0.0, law.gravity])          # step_world adds the start frame's gravity itself
        starts = [ObjectTrack(obs.shapes[k], obs.colours[k], obs.radius[k], fit.positions[k, i][None],
                              (fit.velocities[k, i] - g)[None]) for k in (a, b)]
        lawful = step_world(starts, size, j + 2 - i, law.gravity, law.restitution, law.collision_restitution)
        for k, sim in zip((a, b), lawful):
            errors.append(float(np.linalg.norm((obs.clear[k, j + 1] - obs.clear[k, j])
                                               - (sim.positions[-1] - sim.positions[-2]))))
    return errors


def energy_drift(obs: Observed, law: Law, size: float) -> float:
    """Relative change of the total energy from the first to the last third of the clip, over the
    frames where every object's velocity is clear (medians: a bounce's shortened step is an outlier)."""
    v = obs.clear[:, 1:] - obs.clear[:, :-1]
    height = (size - obs.radius[:, None]) - obs.clear[:, :-1, 1]
    energy = np.sum(obs.mass[:, None] * (0.5 * np.sum(v ** 2, axis=-1) + law.gravity * height), axis=0)
    frames = len(energy)
    first, last = energy[: frames // 3], energy[frames - frames // 3:]
    first, last = first[np.isfinite(first)], last[np.isfinite(last)]
    if len(first) < 2 or len(last) < 2 or np.median(first) <= 0:
        return float("nan")
    return float(abs(np.median(last) - np.median(first)) / np.median(first))


def law_scores(tracks: dict[str, Track], law: Law, size: float, known: int = 0) -> dict:
    """Every measure of the module docstring for one video's tracks (NaN: nothing to measure), and
    physics_error_px, the mean over tracks of the RMS position error of the fitted law (world.py)."""
    obs = Observed.of(tracks)
    nan = float("nan")
    if not obs.colours:
        return {"physics_error_px": nan, "gravity_error_px": nan, "velocity_error_px": nan, "energy_drift": nan}
    episodes = contacts(obs) if law.collisions else []
    fit = fit_segments(obs, law, size, episodes)
    scores = {
        "physics_error_px": float(np.mean(fit.rms)) if fit.rms else nan,
        "gravity_error_px": abs(gravity_fit(obs, size) - law.gravity),
        "velocity_error_px": velocity_error(obs.clear, fit.positions, known),
        "energy_drift": energy_drift(obs, law, size),
    }
    if law.collisions:
        errors = collision_errors(obs, law, size, episodes, fit)
        scores["collision_error_px"] = float(np.median(errors)) if errors else nan
        scores["overlap_px"] = overlap(obs)
    return scores


def overlap(obs: Observed) -> float:
    """Deepest overlap (px) of two bounding circles over the frames where both objects are found."""
    depths = [0.0]
    for a in range(len(obs.colours)):
        for b in range(a + 1, len(obs.colours)):
            dist = np.linalg.norm(obs.all[a] - obs.all[b], axis=1)
            depths += list(obs.radius[a] + obs.radius[b] - dist[np.isfinite(dist)])
    return float(max(depths))


def truth_positions(obs: Observed, truth: list[ObjectTrack]) -> np.ndarray:
    """The simulator's (K, T, 2) positions of the observed objects (matched by colour; NaN if not in the truth)."""
    frames = obs.all.shape[1]
    out = np.full((len(obs.colours), frames, 2), np.nan)
    for k, colour in enumerate(obs.colours):
        positions = next((np.asarray(t.positions, float) for t in truth if t.colour == colour), np.zeros((0, 2)))
        out[k, :len(positions[:frames])] = positions[:frames]      # a truth shorter than the video: NaN after it
    return out


def truth_scores(tracks: dict[str, Track], truth: list[ObjectTrack], known: int, max_angle: float = 30.0) -> dict:
    """Against the simulator (a clip continued from the truth's first `known` frames):
    truth_velocity_error_px: velocity error after them (px/frame, where the video shows the object clear);
    collision_direction: of the truth's collisions after them whose outgoing step the video shows (within
    3 frames; collisions_seen counts them), the share going within `max_angle` degrees of the truth's."""
    obs = Observed.of(tracks)
    reference = truth_positions(obs, truth)
    error = velocity_error(obs.clear, reference, known)
    right = total = 0
    for k, colour in enumerate(obs.colours):
        mine = next((t for t in truth if t.colour == colour), None)
        for c in (mine.collisions if mine is not None else ()):
            # the collision happened in the move out of frame c: the steps out of c + 1, ... go away
            readable = [t for t in range(c + 1, min(c + 4, obs.clear.shape[1] - 1, len(mine.positions) - 1))
                        if np.isfinite(obs.clear[k, t:t + 2]).all()]
            if c + 1 < known or not readable:
                continue
            t = readable[0]
            total += 1
            seen = obs.clear[k, t + 1] - obs.clear[k, t]
            want = mine.positions[t + 1] - mine.positions[t]
            cos = np.dot(seen, want) / max(np.linalg.norm(seen) * np.linalg.norm(want), 1e-9)
            right += bool(np.isfinite(cos) and cos >= np.cos(np.radians(max_angle)))
    return {"truth_velocity_error_px": error, "collision_direction": right / total if total else float("nan"),
            "collisions_seen": total}
