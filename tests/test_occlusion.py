"""Occlusion: the blend measure finds two-tone blobs and never the truth's opaque overlaps, and the
overlap loss weight (train.overlap_weight) weighs exactly the pixels where objects overlap."""
import numpy as np
import torch

from vidiff.config import DataConfig, ShapesConfig, config_from_dict
from vidiff.data import ShapesDataset, collate
from vidiff.data.io import to_uint8
from vidiff.data.objects import track
from vidiff.data.synthetic import ObjectTrack, overlap_mask
from vidiff.evaluation import corruptions as C
from vidiff.evaluation.occlusion import blend_share
from vidiff.training.diffusion import DiffusionTask, training_loss
from vidiff.world import parse_caption

from conftest import tiny_config_dict

TWO = DataConfig(shapes=ShapesConfig(min_objects=2, max_objects=2))


def meeting_clips(num: int = 6) -> list[dict]:
    data = ShapesDataset(TWO)
    return [it for it in (data[i] for i in range(60)) if overlap_mask(it["tracks"], 16, 32).any()][:num]


def share(video, caption):
    return blend_share(video, track(video)[0], [c for c, _ in parse_caption(caption)])


def test_the_truth_never_blends_and_a_blob_is_caught():
    clips = meeting_clips()
    truth = [share(to_uint8(c["video"]), c["caption"]) for c in clips]
    blobs = [share(C.blend_overlaps(c["tracks"], 32), c["caption"]) for c in clips]
    assert sum(m for _, m in truth) >= 20 and all(s == 0 for s, _ in truth)
    assert np.mean([s for s, _ in blobs]) > 0.5


def test_overlap_mask_marks_only_where_two_objects_cover():
    a = ObjectTrack("circle", "red", 5.0, np.array([[10.0, 16.0], [6.0, 16.0]]), np.zeros((2, 2)))
    b = ObjectTrack("square", "blue", 5.0, np.array([[16.0, 16.0], [26.0, 16.0]]), np.zeros((2, 2)))
    mask = overlap_mask([a, b], 2, 32)
    assert mask[0, 16, 13] and not mask[0, 16, 3] and not mask[1].any()
    assert not overlap_mask([a], 2, 32).any()


def test_overlap_weights_leave_the_loss_alone_without_overlaps_and_change_it_with_them():
    values = tiny_config_dict()
    values["data"]["shapes"] = {"min_objects": 2, "max_objects": 2}
    values["train"]["overlap_weight"] = 4.0
    cfg = config_from_dict(values)
    task = DiffusionTask(cfg, torch.device("cpu"))
    items = [task.dataset[i] for i in range(40)]
    batch = collate([it for it in items if overlap_mask(it["tracks"], cfg.data.frames, cfg.data.size).any()][:2])
    x0, ids = batch["video"], task.model.tokenizer.encode(batch["caption"])

    def loss(weights):
        return training_loss(task.model, cfg, x0, ids, task.model.tokenizer.empty(1), torch.Generator().manual_seed(0),
                             weights=weights)
    ones = torch.ones(2, 1, *x0.shape[2:])
    assert torch.equal(loss(None), loss(ones))
    weights = task.overlap_weights(batch)
    assert weights.max() == 5.0 and weights.min() == 1.0
    assert not torch.allclose(loss(None), loss(weights))
