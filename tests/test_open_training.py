"""Folder data as people have it: aspect-ratio and frame buckets (no square crops, no upscaling),
videos and images in one run, several directories with repeats, and an open model's LoRA run on
them with its disk cache; fp8 base weights."""
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from vidiff.config import DataConfig, FolderConfig, SourceConfig, config_from_dict
from vidiff.data import collate
from vidiff.data.buckets import BatchSchedule, bucket_size, frame_bucket
from vidiff.data.io import save_video
from vidiff.data.video_folder import VideoFolderDataset
from vidiff.errors import VidiffError


def clip(frames: int, h: int, w: int, colour: int = 0) -> np.ndarray:
    x = np.zeros((frames, h, w, 3), np.uint8)
    for t in range(frames):
        x[t, h // 4:h // 2, 2 * t:2 * t + w // 4, colour] = 255
    return x


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """Landscape and portrait clips, one short clip, square stills; a second directory of portrait clips."""
    root = tmp_path_factory.mktemp("footage")
    wide, tall = root / "wide", root / "tall"
    wide.mkdir(), tall.mkdir()
    for i in range(2):
        save_video(clip(9, 48, 80, i), wide / f"land{i}.mp4", fps=8)
        (wide / f"land{i}.txt").write_text(f"a {'red' if i == 0 else 'green'} ball rolls right")
    save_video(clip(6, 48, 80, 2), wide / "short.mp4", fps=8)
    (wide / "short.txt").write_text("a blue ball rolls")
    for i in range(2):
        Image.fromarray(clip(1, 64, 64, i)[0]).save(wide / f"still{i}.png")
        (wide / f"still{i}.txt").write_text("a ball at rest")
    save_video(clip(9, 80, 48, 1), tall / "portrait.mp4", fps=8)
    (tall / "portrait.txt").write_text("a green ball rolls down")
    return root


def test_a_bucket_keeps_the_aspect_ratio_at_the_target_area_and_never_upscales():
    assert bucket_size(1080, 1920, 480 * 832, 16) == (480, 848)           # 16:9 footage at Wan's area
    assert bucket_size(1920, 1080, 480 * 832, 16) == (848, 480)
    assert bucket_size(512, 512, 480 * 832, 16) == (512, 512)             # smaller than the area: its own size
    h, w = bucket_size(100, 200, 512 * 512, 16)
    assert (h, w) == (96, 192) and h <= 100 and w <= 200                  # rounded down to the multiple, not up
    assert bucket_size(12, 200, 512 * 512, 16) is None                    # under one multiple
    assert frame_bucket(12, [1, 9, 17], 1) == 9 and frame_bucket(12, [9, 17], 2) is None
    assert frame_bucket(40, [1, 9, 17], 2) == 17


def test_a_batch_schedule_puts_one_bucket_in_each_batch_and_every_item_in_each_epoch():
    buckets = [(9, 32, 48)] * 5 + [(9, 48, 32)] * 3 + [(1, 32, 32)] * 2
    s = BatchSchedule(buckets, seed=3, batch_size=2)
    assert s.per_epoch == 3 + 2 + 1
    for e in range(3):
        batches = [s.batch(e * s.per_epoch + k) for k in range(s.per_epoch)]
        assert all(len({buckets[i] for i in b}) == 1 for b in batches)
        assert set(i for b in batches for i in b) == set(range(10))
    again = BatchSchedule(buckets, seed=3, batch_size=2)
    assert [again.batch(k) for k in range(20)] == [s.batch(k) for k in range(20)]     # exact resume
    assert [BatchSchedule(buckets, 4, 2).batch(k) for k in range(6)] != [s.batch(k) for k in range(6)]


def test_a_folder_of_two_aspect_ratios_and_stills_gives_unsquare_clips_by_bucket(footage):
    cfg = DataConfig(type="folder", frames=9, size=32, folder=FolderConfig(
        path=str(footage / "wide"), frames=[5, 9], image_every=3,
        sources=[SourceConfig(path=str(footage / "tall"), repeats=3)]))
    data = VideoFolderDataset(cfg, multiple=16)
    assert data.buckets() == Counter({(9, 32, 48): 2, (5, 32, 48): 1, (9, 48, 32): 3, (1, 32, 32): 2})
    for k in range(9):
        batch = collate([data.item(k, j, 2) for j in range(2)])      # stacks: one bucket per batch
        f, h, w = batch["video"].shape[2:]
        assert (f == 1) == (k % 3 == 2) and (f, h, w) in data.buckets()
    item = data.item(0, 0, 1)
    assert item["video"].abs().max() <= 1 and torch.equal(data.item(0, 0, 1)["video"], item["video"])
    # the short clip takes the 5-frame bucket; with targets [9] alone it is skipped as too short
    only_nine = VideoFolderDataset(DataConfig(type="folder", frames=9, size=32, folder=FolderConfig(path=str(footage / "wide"))),
                                   warn=False, multiple=16)
    assert any(name == "short.mp4" and why.startswith("too short") for name, why in only_nine.skipped)


def test_data_check_prints_the_buckets(footage, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {{type: folder, frames: 9, size: 32, folder: {{frames: [5, 9], sources: [{{path: '{footage / 'tall'}', "
                      "repeats: 2}]}}\nmodel: {dit: {patch: [1, 8, 8]}, type: dit, text: {vocab: [a, red, green, blue, ball, rolls, "
                      "right, down, at, rest]}}\n")
    r = subprocess.run([sys.executable, "-m", "vidiff", "data", "check", str(footage / "wide"), "--config", str(recipe)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "6 usable (4 videos, 2 images)" in r.stdout
    # a multiple of 8 (this DiT's patch) fits 5:3 closer than Wan's 16 does: 24x40, not 32x48
    assert "sides a multiple of 8" in r.stdout and "9x24x40: 2" in r.stdout and "9x40x24: 2" in r.stdout
    assert "5x24x40: 1" in r.stdout and "1x32x32: 2" in r.stdout
    # the recipe's own directories when no FOLDER is named
    recipe.write_text(recipe.read_text().replace("folder: {", f"folder: {{path: '{footage / 'wide'}', "))
    again = subprocess.run([sys.executable, "-m", "vidiff", "data", "check", "--config", str(recipe), "--no-decode"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "9x24x40: 2" in again.stdout and "9x40x24: 2" in again.stdout, again.stderr


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    from vidiff.models.external.random_wan import save_random_wan
    return save_random_wan(tmp_path_factory.mktemp("wan") / "wan-tiny")


def lora_recipe(wan_dir, footage, cache, **model):
    return config_from_dict({
        "model": {"pretrained": str(wan_dir), **model},
        "data": {"type": "folder", "frames": 9, "size": 32,
                 "folder": {"path": str(footage / "wide"), "frames": [5, 9], "image_every": 3, "cache": str(cache),
                            "sources": [{"path": str(footage / "tall"), "repeats": 2}]}},
        "train": {"steps": 6, "batch_size": 2, "lr": 1e-3, "log_every": 3, "checkpoint_every": 6, "sample_every": 0,
                  "lora": {"rank": 4}}})


def test_an_open_model_trains_on_buckets_and_stills_and_a_second_run_reads_the_cache(wan_dir, footage, tmp_path,
                                                                                       monkeypatch):
    from safetensors.torch import load_file

    from vidiff.models.external import wan
    from vidiff.training import Trainer
    encoded, encode = [], wan.WanCodec.encode
    monkeypatch.setattr(wan.WanCodec, "encode", lambda self, video: encoded.append(tuple(video.shape[2:])) or encode(self, video))
    cfg = lora_recipe(wan_dir, footage, tmp_path / "cache")
    trainer = Trainer(cfg, tmp_path / "run1", progress=False)
    assert sorted(encoded) == sorted([(9, 32, 48)] * 2 + [(5, 32, 48), (9, 48, 32), (1, 32, 32), (1, 32, 32)])
    # the cache holds each clip's latents at its bucket's own size (the VAE: 8x, 4 frames to 1)
    shapes = Counter(tuple(load_file(f)["x"].shape[1:]) for f in (tmp_path / "cache").rglob("*.safetensors")
                     if load_file(f)["x"].dim() == 4)
    assert shapes == Counter({(3, 4, 6): 2, (2, 4, 6): 1, (3, 6, 4): 1, (1, 4, 4): 2})
    trainer.train()
    assert (tmp_path / "run1" / "checkpoints" / "step_00000006" / "lora_comfy.safetensors").is_file()
    encoded.clear()
    Trainer(cfg, tmp_path / "run2", progress=False)
    assert encoded == []                                    # every clip read from the cache, none encoded


def test_frame_targets_the_vae_cannot_take_are_one_line_errors(wan_dir, footage, tmp_path):
    from vidiff.training import Trainer
    cfg = lora_recipe(wan_dir, footage, tmp_path / "cache")
    cfg.data.folder.frames = [6, 9]
    with pytest.raises(VidiffError, match="frame target 6 .* takes 1 \\+ 4k frames"):
        Trainer(cfg, tmp_path / "run", progress=False)


def test_fp8_base_weights_train_a_lora_close_to_the_full_precision_base(wan_dir, footage, tmp_path):
    from contextlib import nullcontext

    from vidiff.training import Trainer
    runs = {}
    for fp8 in (False, True):
        trainer = Trainer(lora_recipe(wan_dir, footage, tmp_path / "cache", fp8_base=fp8), tmp_path / f"run{fp8}",
                          progress=False)
        batch = collate([trainer.task.dataset.item(0, j, 2) for j in range(2)])
        loss, _ = trainer.task.loss(trainer.net, batch, torch.Generator().manual_seed(0), slice(0, 2), nullcontext())
        loss.backward()
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        runs[fp8] = loss.item(), grads, trainer
    (loss32, grads32, _), (loss8, grads8, trainer) = runs[False], runs[True]
    blocks = trainer.model.transformer.blocks
    weights = [m.weight for m in blocks.modules() if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad]
    assert weights and all(w.dtype == torch.float8_e4m3fn for w in weights)
    assert abs(loss8 - loss32) < 0.02 * loss32
    up = [n for n in grads32 if n.endswith("up.weight")]         # B starts at zero: its gradient carries the base
    cos = torch.nn.functional.cosine_similarity(torch.cat([grads8[n].flatten() for n in up]),
                                                torch.cat([grads32[n].flatten() for n in up]), dim=0)
    assert cos > 0.99, cos
    trainer.train()                                                # and a run with it finishes
    assert (tmp_path / "runTrue" / "checkpoints" / "step_00000006" / "lora.safetensors").is_file()


def test_one_expert_of_a_two_expert_model_trains_on_its_side_of_the_boundary(footage, tmp_path):
    from vidiff.models.external.random_wan import save_random_wan
    from vidiff.pipeline import VideoPipeline
    from vidiff.training import Trainer
    from vidiff.training.open_model import expert_times
    a14b = save_random_wan(tmp_path / "a14b", layout="a14b")
    cfg = lora_recipe(a14b, footage, tmp_path / "cache")
    with pytest.raises(VidiffError, match="has two experts .* set train.expert: high or low"):
        Trainer(cfg, tmp_path / "none", progress=False)
    cfg.train.expert = "low"
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    backbone = trainer.model
    high, low = expert_times(backbone, "high", trainer.task.open.objective), trainer.task.open.objective.times
    assert low[1] < high[0] and low[0] == 0 and high[1] == 1
    ran = []
    backbone.transformer.register_forward_pre_hook(lambda *a: ran.append("high"))
    backbone.transformer_2.register_forward_pre_hook(lambda *a: ran.append("low"))
    trainer.train()
    assert ran and set(ran) == {"low"}                         # every step on the low-noise side
    names = [n for n, p in backbone.named_parameters() if p.requires_grad]
    assert names and all(n.startswith("transformer_2.") and ".lora." in n for n in names)
    pipe = VideoPipeline.from_pretrained(tmp_path / "run")     # the run as a model: the adapter on its expert
    assert any(".lora." in n for n, _ in pipe.bundle.backbone.transformer_2.named_parameters())
    assert not any(".lora." in n for n, _ in pipe.bundle.backbone.transformer.named_parameters())
    cfg.train.expert = "high"
    with pytest.raises(VidiffError, match="train.expert differs"):
        Trainer(cfg, tmp_path / "run", resume=True, progress=False)


def test_offloaded_activations_give_the_same_loss_and_adapter_gradients(wan_dir, footage, tmp_path):
    from contextlib import nullcontext

    from vidiff.training import Trainer
    from vidiff.training.activation_offload import STATS
    results = []
    for n, model in enumerate(({}, {"offload_activations": True}, {"offload_activations": True, "blocks_to_swap": 1})):
        trainer = Trainer(lora_recipe(wan_dir, footage, tmp_path / "cache", **model), tmp_path / f"run{n}", progress=False)
        batch = collate([trainer.task.dataset.item(0, j, 2) for j in range(2)])
        before = STATS["tensors"]
        loss, _ = trainer.task.loss(trainer.net, batch, torch.Generator().manual_seed(0), slice(0, 2), nullcontext())
        packed = STATS["tensors"] - before           # what the blocks saved for backward went through the host hooks
        loss.backward()
        grads = {k: p.grad for k, p in trainer.model.named_parameters() if p.requires_grad}
        results.append((loss.item(), grads, packed, len(trainer.model.transformer.blocks)))
    (loss, grads, packed, blocks), *offloaded = results
    assert packed == 0
    for loss_o, grads_o, packed_o, _ in offloaded:
        assert packed_o >= blocks                    # at least each block's input
        assert loss_o == pytest.approx(loss, rel=1e-6)
        assert grads_o.keys() == grads.keys() and all(torch.allclose(grads_o[k], grads[k], atol=1e-6) for k in grads)
        assert any(g.abs().max() > 0 for g in grads_o.values())


def test_a_folder_of_images_alone_trains_an_open_model(wan_dir, tmp_path):
    """It was 0 clips and a ZeroDivisionError: an image is a one-frame video."""
    from vidiff.training import Trainer
    (tmp_path / "stills").mkdir()
    for i in range(2):
        Image.fromarray(clip(1, 48, 80, i)[0]).save(tmp_path / "stills" / f"s{i}.jpg")
        (tmp_path / "stills" / f"s{i}.txt").write_text("a ball at rest")
    cfg = config_from_dict({"model": {"pretrained": str(wan_dir)},
                            "data": {"type": "folder", "frames": 9, "size": 32,
                                     "folder": {"path": str(tmp_path / "stills"), "cache": str(tmp_path / "cache")}},
                            "train": {"steps": 2, "batch_size": 2, "sample_every": 0, "checkpoint_every": 2,
                                      "lora": {"rank": 2}}})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert trainer.task.dataset.buckets() == Counter({(1, 32, 48): 2})
    trainer.train()
    assert trainer.history and np.isfinite(trainer.history[-1]["loss"])


def test_a_sample_sheet_with_block_swap_streams_the_blocks_and_matches_the_sheet_without(wan_dir, footage, tmp_path):
    """The sheet samples the run's average, which shares the frozen (swapped) weights and their swap hooks."""
    from vidiff.training import Trainer
    sheets = []
    for swap in (0, 2):
        cfg = lora_recipe(wan_dir, footage, tmp_path / "cache", blocks_to_swap=swap)
        cfg.train.steps, cfg.train.sample_every, cfg.train.sample_steps = 2, 2, 2
        cfg.train.sample_prompts = ["a red ball rolls right"]
        trainer = Trainer(cfg, tmp_path / f"run{swap}", progress=False)
        trainer.train()
        hooks = [h.__self__ for b in trainer.ema.model.transformer.blocks for h in b._forward_pre_hooks.values()
                 if hasattr(h, "__self__")]
        if swap:          # the average's own swap (a copy of the run's) moved its blocks in and out while it sampled
            assert hooks and hooks[0] is not trainer.task.open.swap and hooks[0].moves > 0 and hooks[0].peak == 1
        sheets.append(np.asarray(Image.open(tmp_path / f"run{swap}" / "samples" / "step_00000002.png")).astype(int))
    assert np.abs(sheets[0] - sheets[1]).max() <= 1 and sheets[0].std() > 1
