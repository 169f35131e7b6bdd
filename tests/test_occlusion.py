"""Occlusion: the blend measure finds two-tone blobs and never the truth's opaque overlaps, and the
overlap loss weights (train.overlap_weight for diffusion, vae.overlap_weight for the VAE) weigh exactly
the pixels where objects overlap."""
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
from vidiff.training.vae import VAETask, vae_loss
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


def test_vae_overlap_weights_count_the_overlap_pixels_that_many_times():
    values = tiny_config_dict()
    values["data"] = {"frames": 8, "size": 32, "shapes": {"min_objects": 2, "max_objects": 2}}
    values["vae"] = {"channels": 8, "channel_mults": [1, 2], "overlap_weight": 9.0}
    cfg = config_from_dict(values)
    task = VAETask(cfg, torch.device("cpu"))
    items = [task.dataset[i] for i in range(40)]
    batch = collate([it for it in items if overlap_mask(it["tracks"], 8, 32).any()][:2])
    weights = task.overlap_weights(batch)
    masks = np.stack([overlap_mask(t, 8, 32) for t in batch["tracks"]])[:, None]
    assert torch.equal(weights, torch.from_numpy(1 + 9.0 * masks).float())

    target = batch["video"]
    mean = logvar = torch.zeros(2, 4, 8, 16, 16)
    recon = target.clone()
    recon[torch.from_numpy(np.broadcast_to(masks, target.shape).copy())] += 0.5   # wrong only where objects overlap
    plain = vae_loss(cfg, recon, target, mean, logvar)[1]
    weighted = vae_loss(cfg, recon, target, mean, logvar, weights)[1]
    share = masks.mean()
    # an error on overlap pixels alone: the plain mean sees it at their share, the weighted one 10x more often
    assert abs(plain["l1"] - 0.5 * share) < 1e-6
    assert abs(weighted["l1"] - 0.5 * 10 * share / (1 + 9 * share)) < 1e-6
    assert weighted["grad"] > plain["grad"]
    ones = torch.ones_like(weights)
    assert torch.allclose(vae_loss(cfg, recon, target, mean, logvar, ones)[0], vae_loss(cfg, recon, target, mean, logvar)[0])
