"""The physics world's law, measured (vidiff.evaluation.law): the ground truth scores near zero, and each
corruption that breaks one rule (evaluation.corruptions) is caught by the measure of that rule, in
each of three independent runs."""
import dataclasses

import numpy as np
import pytest

from vidiff.config import DataConfig, ShapesConfig
from vidiff.data import ShapesDataset
from vidiff.data.io import to_uint8
from vidiff.data.objects import track
from vidiff.evaluation import corruptions as C
from vidiff.evaluation.law import Law, law_scores, truth_scores

PHYSICS = ShapesConfig(min_objects=2, max_objects=2, radius=[0.15, 0.2], speed=[0.02, 0.05], gravity=0.004,
                       collisions=True)
SIZE = 32
# corruption -> (the measure that must catch it, the least it must reach: well above the truth's)
CAUGHT_BY = {
    "reverse_gravity": ("gravity_error_px", 0.1),      # the world's gravity is 0.128 px/frame^2
    "remove_gravity": ("gravity_error_px", 0.1),
    "lose_energy": ("energy_drift", 0.15),
    "pass_through": ("overlap_px", 2.0),
    "no_momentum_exchange": ("collision_error_px", 0.4),
}


def colliding_clips(seed: int, num: int = 4) -> list[dict]:
    """The first `num` clips of a seeded physics world in which the two objects collide."""
    data = ShapesDataset(DataConfig(seed=seed, shapes=PHYSICS))
    items = (data[i] for i in range(200))
    return [it for it, _ in zip((it for it in items if it["tracks"][0].collisions), range(num))]


def law_of_clip(video: np.ndarray) -> dict:
    law = Law.of(DataConfig(shapes=PHYSICS))
    return law_scores(track(video)[0], law, SIZE)


@pytest.fixture(scope="module")
def runs():
    return {seed: colliding_clips(seed) for seed in (0, 1, 2)}


def mean(values):
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def test_the_truth_follows_its_law_and_matches_the_simulator(runs):
    clips = runs[0]
    scores = [law_of_clip(to_uint8(c["video"])) for c in clips]
    assert mean(s["physics_error_px"] for s in scores) < 0.15
    assert mean(s["gravity_error_px"] for s in scores) < 0.03
    assert mean(s["velocity_error_px"] for s in scores) < 0.15
    assert mean(s["collision_error_px"] for s in scores) < 0.35
    assert mean(s["overlap_px"] for s in scores) < 0.5
    against = [truth_scores(track(to_uint8(c["video"]))[0], c["tracks"], known=4) for c in clips]
    assert mean(a["truth_velocity_error_px"] for a in against) <= 0.1      # the target
    assert all(a["collision_direction"] == 1.0 for a in against if a["collisions_seen"])
    assert sum(a["collisions_seen"] for a in against) >= 3


@pytest.mark.parametrize("corruption", sorted(CAUGHT_BY))
def test_each_physics_corruption_is_caught_in_three_of_three_runs(runs, corruption):
    measure, least = CAUGHT_BY[corruption]
    law = Law.of(DataConfig(shapes=PHYSICS))
    for seed, clips in runs.items():
        truth = mean(law_of_clip(to_uint8(c["video"]))[measure] for c in clips)
        broken = mean(law_of_clip(getattr(C, corruption)(c["tracks"], SIZE, law))[measure] for c in clips)
        assert broken >= least and broken > 2 * truth, (seed, truth, broken)


def test_a_corruption_changes_only_its_rule():
    """Simulated again without a change, a clip is its own truth; without gravity, objects keep their
    starting velocity between bounces."""
    law = Law.of(DataConfig(shapes=PHYSICS))
    clip = colliding_clips(0, 1)[0]
    np.testing.assert_array_equal(C.resimulate(clip["tracks"], SIZE, law), to_uint8(clip["video"]))
    assert not np.array_equal(C.remove_gravity(clip["tracks"], SIZE, law), to_uint8(clip["video"]))


def test_centroids_are_sub_pixel():
    """Clear objects are located to a tenth of a pixel (coverage-weighted centroids), which velocity
    errors of 0.1 px/frame need."""
    item = ShapesDataset(DataConfig())[3]
    tracks, _ = track(to_uint8(item["video"]))
    errors = [np.linalg.norm(d.centroid - t.positions[f]) for t in item["tracks"]
              for f, d in enumerate(tracks[t.colour].detections) if d is not None and not d.occluded]
    assert len(errors) > 10 and np.mean(errors) < 0.05


def test_law_of_a_world():
    law = Law.of(DataConfig(shapes=PHYSICS))
    assert law.gravity == pytest.approx(0.128) and law.collisions
    assert Law.of(DataConfig()) == Law()


def test_a_truth_shorter_than_the_video_scores_the_frames_it_has(runs):
    """A continued clip can run past the simulator's frames: those frames are unknown, not a crash."""
    clip = runs[0][0]
    video = to_uint8(clip["video"])
    short = [dataclasses.replace(t, positions=t.positions[:8], velocities=t.velocities[:8]) for t in clip["tracks"]]
    full = truth_scores(track(video)[0], clip["tracks"], known=4)
    cut = truth_scores(track(video)[0], short, known=4)
    assert np.isfinite(cut["truth_velocity_error_px"]) and cut["collisions_seen"] <= full["collisions_seen"]
