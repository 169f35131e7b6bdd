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
