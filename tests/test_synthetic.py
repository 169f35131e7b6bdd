import numpy as np
import pytest
import torch

from vidiff.config import DataConfig, ShapesConfig, config_from_dict
from vidiff.errors import VidiffError
from vidiff.world import COLOURS
from vidiff.data import ShapesDataset
from vidiff.data.synthetic import shape_mask, step_physics


def test_clips_are_a_pure_function_of_seed_and_index():
    d = ShapesDataset(DataConfig())
    a, b, c = d[7], d[7], d[8]
    assert torch.equal(a["video"], b["video"]) and a["caption"] == b["caption"]
    assert not torch.equal(a["video"], c["video"])
    assert not torch.equal(a["video"], ShapesDataset(DataConfig(seed=1))[7]["video"])


@pytest.mark.parametrize("frames,size", [(1, 16), (16, 32), (9, 48)])
def test_any_frame_count_and_size(frames, size):
    item = ShapesDataset(DataConfig(frames=frames, size=size))[0]
    assert item["video"].shape == (3, frames, size, size)
    assert item["video"].min() >= -1 and item["video"].max() <= 1


def test_ground_truth_matches_caption_and_pixels():
    cfg = DataConfig(shapes=ShapesConfig(max_objects=3, min_objects=1))
    for i in range(20):
        item = ShapesDataset(cfg)[i]
        tracks = item["tracks"]
        assert item["caption"] == " and ".join(f"a {t.colour} {t.shape}" for t in tracks) + " bouncing"
        assert len({t.colour for t in tracks}) == len(tracks)
        top = tracks[-1]  # drawn last, so its centre pixel shows its own colour
        for t in range(cfg.frames):
            x, y = (top.positions[t]).astype(int)
            pixel = (item["video"][:, t, y, x] + 1) * 127.5
            np.testing.assert_allclose(pixel.numpy(), COLOURS[top.colour], atol=1.5)
            assert np.all(top.positions[t] >= top.radius - 1e-9) and np.all(top.positions[t] <= cfg.size - top.radius + 1e-9)


def test_bounces_are_elastic_and_positions_follow_velocities():
    p, v = step_physics(np.array([5.0, 5.0]), np.array([3.0, -2.0]), r=4.0, size=32.0, frames=40, gravity=0.0)
    speeds = np.linalg.norm(v, axis=1)
    np.testing.assert_allclose(speeds, speeds[0])
    assert (np.diff(np.sign(v[:, 0])) != 0).sum() >= 2          # it hit both side walls
    free = np.all(np.sign(v[1:]) == np.sign(v[:-1]), axis=1)     # frames without a bounce
    np.testing.assert_allclose((p[1:] - p[:-1])[free], v[:-1][free])


def test_gravity_accelerates_downwards_between_bounces():
    _, v = step_physics(np.array([16.0, 6.0]), np.array([0.0, 0.0]), r=3.0, size=32.0, frames=5, gravity=0.5)
    np.testing.assert_allclose(v[:, 1], [0.5, 1.0, 1.5, 2.0, 2.5])


def test_shapes_have_comparable_areas_and_distinct_outlines():
    grid = (np.arange(400) + 0.5) / 10
    xs, ys = np.meshgrid(grid, grid)
    areas = {s: shape_mask(s, 20, 20, 10, xs, ys).sum() / 100 for s in ("circle", "square", "triangle")}
    assert areas["circle"] == pytest.approx(np.pi * 100, rel=0.01)
    assert areas["square"] == pytest.approx((2 * 8.5) ** 2, rel=0.01)
    assert areas["triangle"] == pytest.approx(3 * np.sqrt(3) / 4 * 100, rel=0.01)


def test_min_gap_keeps_objects_apart_and_zero_changes_nothing():
    import dataclasses
    from vidiff.config import DataConfig, ShapesConfig
    from vidiff.data import ShapesDataset
    from vidiff.data.synthetic import min_gap
    base = DataConfig(shapes=ShapesConfig(min_objects=2, max_objects=2))
    apart = dataclasses.replace(base, shapes=dataclasses.replace(base.shapes, min_gap=0.05))
    gaps = [min_gap(ShapesDataset(base)[i]["tracks"]) for i in range(60)]
    kept = [min_gap(ShapesDataset(apart)[i]["tracks"]) for i in range(60)]
    assert min(gaps) < 0 and min(kept) >= 0.05 * base.size          # overlaps happen unless told otherwise
    assert ShapesDataset(base)[3]["caption"] == ShapesDataset(DataConfig(shapes=ShapesConfig(min_objects=2, max_objects=2,
                                                                                          min_gap=0.0)))[3]["caption"]


def test_excluded_pairs_never_appear_in_clips_but_do_in_the_mixed_in_stills():
    from vidiff.world import parse_caption
    shapes = ShapesConfig(exclude=["red triangle", "green circle"], image_every=3, num_clips=8)
    data = ShapesDataset(DataConfig(shapes=shapes))
    clip_pairs = {p for i in range(200) for p in parse_caption(data[i]["caption"])}
    assert not clip_pairs & {("red", "triangle"), ("green", "circle")} and len(clip_pairs) > 10
    assert [data.item(k, 0, 4)["video"].shape[1] for k in range(6)] == [16, 16, 1, 16, 16, 1]
    still_pairs = {p for k in range(200) for p in parse_caption(data.item(3 * k + 2, 0, 4)["caption"])}
    assert {("red", "triangle"), ("green", "circle")} <= still_pairs
    assert len({data.item(3 * k + 2, 0, 4)["caption"] for k in range(20)}) > 8        # not cycling over num_clips


def test_bad_exclusions_and_mixing_are_one_line_errors():
    with pytest.raises(VidiffError, match="'colour shape' pairs"):
        config_from_dict({"data": {"shapes": {"exclude": ["red hexagon"]}}})
    with pytest.raises(VidiffError, match="no shape for 'red'"):
        config_from_dict({"data": {"shapes": {"exclude": ["red circle", "red square", "red triangle"]}}})
    with pytest.raises(VidiffError, match="stills already"):
        config_from_dict({"data": {"frames": 1, "shapes": {"image_every": 2}}})


def disc(colour: str, x: float, y: float, vx: float, vy: float, r: float = 3.0, shape: str = "circle"):
    from vidiff.data.synthetic import ObjectTrack
    return ObjectTrack(shape, colour, r, np.array([[x, y]]), np.array([[vx, vy]]))


def test_a_world_without_collisions_moves_each_object_exactly_as_it_would_alone():
    from vidiff.data.synthetic import step_world
    starts = [disc("red", 10, 16, 1.5, 0.3), disc("blue", 22, 16, -1.5, -0.2, shape="square")]
    together = step_world(starts, 32.0, 30, gravity=0.1)
    for start, track in zip(starts, together):
        alone, velocities = step_physics(start.positions[0], start.velocities[0], start.radius, 32.0, 30, 0.1)
        assert np.array_equal(track.positions, alone) and np.array_equal(track.velocities, velocities)
        assert track.collisions == ()                   # they pass through one another


@pytest.mark.parametrize("restitution", [1.0, 0.5])
def test_collisions_conserve_momentum_and_keep_the_restitution_share_of_the_closing_speed(restitution):
    """Two discs of different mass meet head-on (slightly off-centre) far from the walls."""
    from vidiff.data.synthetic import step_world
    starts = [disc("red", 40, 50, 2.0, 0.0, r=6.0), disc("blue", 60, 52, -1.0, 0.0, r=4.0, shape="square")]
    a, b = step_world(starts, 100.0, 12, gravity=0.0, collisions=restitution)
    assert a.collisions == b.collisions and len(a.collisions) == 1
    momentum = a.mass * a.velocities + b.mass * b.velocities                        # (T, 2)
    assert np.allclose(momentum, momentum[0], atol=1e-9)                            # every frame
    hit = a.collisions[0] + 1                                   # velocities leaving the frame after the contact
    normal = (b.positions[hit] - a.positions[hit]) / np.linalg.norm(b.positions[hit] - a.positions[hit])
    before = np.dot(a.velocities[0] - b.velocities[0], normal)
    after = np.dot(a.velocities[hit] - b.velocities[hit], normal)
    assert before > 0 and after == pytest.approx(-restitution * before, rel=0.05)   # the normal may turn slightly
    energy = lambda t: 0.5 * (a.mass * (a.velocities[t] ** 2).sum() + b.mass * (b.velocities[t] ** 2).sum())
    assert energy(hit) == pytest.approx(energy(0), rel=1e-9) if restitution == 1.0 else energy(hit) < 0.9 * energy(0)
    gaps = np.linalg.norm(a.positions - b.positions, axis=1) - a.radius - b.radius
    assert gaps.min() > -1e-9                                    # never drawn overlapping


def test_a_floor_bounce_keeps_the_restitution_share_of_the_speed():
    from vidiff.data.synthetic import step_world
    (track,) = step_world([disc("red", 16, 5, 0.0, 0.0)], 32.0, 60, gravity=0.2, restitution=0.6)
    vy = track.velocities[:, 1]
    bounce = int(np.argmax(vy < 0))                       # the first frame leaving upwards
    # the floor sends it back at 0.6 of its impact speed; the next frame's record already has gravity added
    assert bounce > 0 and -vy[bounce] == pytest.approx(0.6 * vy[bounce - 1] - 0.2, abs=1e-9)
    peaks = [track.positions[i, 1] for i in range(1, 59) if vy[i - 1] < 0 <= vy[i]]  # tops of the flights
    assert len(peaks) >= 2 and peaks[1] > peaks[0]       # y grows downwards: each bounce reaches less high


def test_the_physics_world_is_a_config_away_and_checked():
    from vidiff.config import config_from_dict
    from vidiff.data.synthetic import ShapesDataset
    from vidiff.errors import VidiffError
    cfg = config_from_dict({"data": {"shapes": {"min_objects": 2, "max_objects": 2, "collisions": True,
                                                "restitution": 0.8, "gravity": 0.002, "speed": [0.05, 0.08]}}})
    clips = [ShapesDataset(cfg.data)[i]["tracks"] for i in range(12)]
    assert sum(bool(tracks[0].collisions) for tracks in clips) >= 2          # collisions happen, and are recorded
    with pytest.raises(VidiffError, match="'data.shapes.restitution' must be >= 0 and <= 1"):
        config_from_dict({"data": {"shapes": {"restitution": 1.5}}})
