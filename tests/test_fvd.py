import numpy as np
import pytest

from vidiff.config import DataConfig, ShapesConfig
from vidiff.evaluation import corruptions as C
from vidiff.evaluation.fvd import WEIGHTS, frechet_distance, fvd_shapes, load_feature_net, video_features
from vidiff.evaluation.sources import ground_truth


def test_frechet_distance_matches_the_gaussian_formula():
    rng = np.random.default_rng(0)
    d, m = 4, np.array([1.0, 0.0, -2.0, 0.5])
    a = rng.standard_normal((200_000, d))
    b = m + 2.0 * rng.standard_normal((200_000, d))
    # |m|^2 + Tr(I + 4I - 2 * 2I) = |m|^2 + d
    assert frechet_distance(a, b) == pytest.approx((m ** 2).sum() + d, rel=0.02)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


@pytest.fixture(scope="module")
def sets():
    cfg = DataConfig()
    net = load_feature_net()
    reference = video_features(net, ground_truth(cfg, 96, offset=10**6)[1])
    truth = ground_truth(cfg, 48)[1]
    rng = np.random.default_rng(0)
    return net, reference, truth, rng


def test_shipped_feature_net_is_small():
    assert WEIGHTS.stat().st_size < 2e6


def test_fvd_shapes_ranks_truth_above_corrupted_video(sets):
    net, reference, truth, rng = sets
    clean = frechet_distance(video_features(net, truth), reference)
    shuffled = frechet_distance(video_features(net, [C.shuffle_frames(v, rng) for v in truth]), reference)
    frozen = frechet_distance(video_features(net, [C.freeze(v) for v in truth]), reference)
    grey = frechet_distance(video_features(net, [v.mean(-1, keepdims=True).repeat(3, -1).astype(np.uint8)
                                                 for v in truth]), reference)
    triangles = frechet_distance(video_features(net, ground_truth(DataConfig(shapes=ShapesConfig(shapes=["triangle"])), 48)[1]), reference)
    assert clean < 0.5 * min(shuffled, frozen, grey), (clean, shuffled, frozen, grey)
    assert clean < triangles   # a narrower distribution of shapes is a distribution shift too


def test_fvd_of_a_single_video_is_nan_not_a_crash():
    _, clips, _ = ground_truth(DataConfig(), 3)
    assert np.isnan(fvd_shapes(clips[:1], clips))
