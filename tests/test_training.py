import json
import os

import pytest
import torch

from conftest import tiny_config_dict
from vidiff.config import config_from_dict
from vidiff.errors import VidiffError
from vidiff.checkpoint import write_checkpoint
from vidiff.training import Trainer
from vidiff.training.diffusion import training_loss


def fixed_loss(trainer, clip):
    """Loss on one clip averaged over fixed noise draws: comparable before and after training."""
    ids = trainer.model.tokenizer.encode([clip["caption"]] * 8)
    video = clip["video"][None].repeat(8, 1, 1, 1, 1)
    with torch.no_grad():
        return training_loss(trainer.model, trainer.cfg, video, ids, trainer.model.tokenizer.empty(1),
                             torch.Generator().manual_seed(123)).item()


def assert_overfits_one_clip(values: dict, run) -> None:
    """Train on a single clip with the x0 target, whose error is memorisable at every noise level:
    the loss on that clip must fall below 5 % of where it started."""
    cfg = config_from_dict(values)
    cfg.data.shapes.num_clips = 1
    cfg.diffusion.prediction, cfg.diffusion.loss_weighting = "x0", "none"
    trainer = Trainer(cfg, run, progress=False)
    clip = trainer.task.dataset[0]
    before = fixed_loss(trainer, clip)
    trainer.train()
    after = fixed_loss(trainer, clip)
    assert after < 0.05 * before, (before, after)


def test_model_overfits_a_single_clip(tmp_path):
    assert_overfits_one_clip(tiny_config_dict(steps=200, lr=2e-3, warmup_steps=10, checkpoint_every=1000,
                                              cfg_dropout=0.0), tmp_path / "run")


def test_resume_continues_bit_for_bit(tmp_path):
    full = Trainer(config_from_dict(tiny_config_dict(steps=4)), tmp_path / "full", progress=False)
    full.train()
    part = Trainer(config_from_dict(tiny_config_dict(steps=2)), tmp_path / "part", progress=False)
    part.train()
    resumed = Trainer(config_from_dict(tiny_config_dict(steps=4)), tmp_path / "part", resume=True, progress=False)
    assert resumed.step == 2
    resumed.train()
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    for a, b in zip(full.ema.model.state_dict().values(), resumed.ema.model.state_dict().values()):
        assert torch.equal(a, b)


def test_time_limit_stops_with_a_checkpoint_and_resume_keeps_the_clock(tmp_path, monkeypatch):
    clock = iter(range(0, 10**6, 30))                 # every perf_counter call: 30 s later
    monkeypatch.setattr("vidiff.training.trainer.perf_counter", lambda: next(clock))
    cfg = config_from_dict(tiny_config_dict(steps=50, checkpoint_every=1000, time_limit_minutes=1.0))
    summary = Trainer(cfg, tmp_path / "run", progress=False).train()
    assert summary["steps"] == 2 and summary["train_seconds"] == 60          # 30 s per step, 1 minute
    assert (tmp_path / "run" / "latest").read_text().strip() == "step_00000002"
    cfg.train.time_limit_minutes = 2.0
    resumed = Trainer(cfg, tmp_path / "run", resume=True, progress=False)
    assert resumed.seconds == 60
    assert resumed.train()["steps"] == 4                                     # the limit counts earlier time
    assert resumed.history[-1]["seconds"] == 120


def test_run_leaves_checkpoints_config_plot_and_samples(tmp_path):
    cfg = config_from_dict(tiny_config_dict(steps=4, checkpoint_every=1, keep_last=2))
    Trainer(cfg, tmp_path / "run", progress=False).train()
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000003", "step_00000004"]
    assert (run / "latest").read_text().strip() == "step_00000004"
    ckpt = run / "checkpoints" / "step_00000004"
    assert {p.name for p in ckpt.iterdir()} == {"config.json", "model.safetensors", "ema.safetensors",
                                                "optimizer.pt", "state.json"}
    assert json.loads((ckpt / "config.json").read_text()) == cfg.to_dict()
    umask = os.umask(0)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in ckpt.iterdir()} == {0o666 & ~umask}   # safetensors alone wrote 0600
    assert (run / "loss.png").stat().st_size > 1000
    assert (run / "samples" / "step_00000004.gif").is_file() and (run / "samples" / "step_00000004.png").is_file()


def test_existing_run_is_never_overwritten_without_resume(tmp_path):
    cfg = config_from_dict(tiny_config_dict(steps=2))
    Trainer(cfg, tmp_path / "run", progress=False).train()
    before = (tmp_path / "run" / "checkpoints" / "step_00000002" / "model.safetensors").read_bytes()
    with pytest.raises(VidiffError, match="already has checkpoints; pass --resume"):
        Trainer(cfg, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "checkpoints" / "step_00000002" / "model.safetensors").read_bytes() == before
    with pytest.raises(VidiffError, match="nothing to resume"):
        Trainer(cfg, tmp_path / "fresh", resume=True, progress=False)
    other = config_from_dict(tiny_config_dict(steps=2))
    other.model.unet3d.base_channels = 32
    with pytest.raises(VidiffError, match="section 'model' differs"):
        Trainer(other, tmp_path / "run", resume=True, progress=False)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch, tiny_config):
    from vidiff.models import build_model
    from vidiff import checkpoint
    model = build_model(tiny_config.model)
    write_checkpoint(tmp_path / "a", tiny_config, model)
    with pytest.raises(VidiffError, match="never overwritten"):
        write_checkpoint(tmp_path / "a", tiny_config, model)

    def crash(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(checkpoint.torch, "save", crash)
    with pytest.raises(OSError):
        write_checkpoint(tmp_path / "b", tiny_config, model, optimizer=torch.optim.SGD(model.parameters(), 0.1))
    assert not (tmp_path / "b").exists() and (tmp_path / "a" / "model.safetensors").is_file()


def test_non_finite_losses_are_skipped_then_stop_the_run(tmp_path, monkeypatch):
    from vidiff.training import diffusion
    trainer = Trainer(config_from_dict(tiny_config_dict(steps=20)), tmp_path / "run", progress=False)
    weights = [p.clone() for p in trainer.model.parameters()]
    monkeypatch.setattr(diffusion, "training_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    trainer.train_step()
    assert trainer.bad_steps == 1 and all(torch.equal(a, b) for a, b in zip(weights, trainer.model.parameters()))
    with pytest.raises(VidiffError, match="non-finite loss"):
        trainer.train()


def test_a_finite_loss_with_non_finite_gradients_is_skipped_too(tmp_path):
    """An overflow in backward: the loss is fine, one gradient is inf. Clipping would spread NaN over
    every weight; the step must be skipped like a NaN loss."""
    trainer = Trainer(config_from_dict(tiny_config_dict(steps=20)), tmp_path / "run", progress=False)
    weights = [p.clone() for p in trainer.model.parameters()]
    first = next(p for p in trainer.model.parameters() if p.requires_grad)
    hook = first.register_hook(lambda g: torch.full_like(g, float("inf")))
    values = trainer.train_step()
    hook.remove()
    assert torch.isfinite(values["loss"]) and trainer.bad_steps == 1
    assert all(torch.equal(a, b) for a, b in zip(weights, trainer.model.parameters()))
    assert all(torch.isfinite(p).all() for p in trainer.ema.model.parameters())


def test_flow_matching_model_learns_to_generate_its_one_clip(tmp_path):
    """Flow matching end to end: train on one clip, then the flow ODE sampler reproduces that clip."""
    from vidiff.pipeline import SampleOptions, sample_video
    cfg = config_from_dict(tiny_config_dict(steps=200, lr=2e-3, warmup_steps=10, checkpoint_every=1000,
                                            cfg_dropout=0.0))
    cfg.data.shapes.num_clips = 1
    cfg.diffusion.prediction, cfg.diffusion.schedule = "flow", "rectified"
    cfg.diffusion.loss_weighting, cfg.diffusion.time_sampling = "none", "logit_normal"
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    clip = trainer.task.dataset[0]
    shape = tuple(clip["video"].shape)

    def error() -> float:
        bundle = trainer.task.bundle(trainer.model.eval())
        cond = bundle.encode([clip["caption"]] * 2, 1)
        video = sample_video(bundle, cond, cond, shape,
                             SampleOptions(steps=20, guidance=1.0, sampler="flow-euler"), torch.Generator().manual_seed(5))
        trainer.model.train()
        return (video - clip["video"]).pow(2).mean().item()

    before = error()
    trainer.train()
    after = error()
    assert after < 0.1 * before and after < 0.05, (before, after)


def test_data_offset_starts_the_training_stream_at_new_clips(tmp_path):
    cfg = config_from_dict(tiny_config_dict(steps=2, data_offset=5))
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    batch = trainer.batch(0)
    size = cfg.train.batch_size
    assert batch["indices"] == list(range(5 * size, 6 * size))
    assert torch.equal(batch["video"][0], trainer.task.dataset[5 * size]["video"])


def test_joint_training_mixes_stills_into_video_batches(tmp_path):
    values = tiny_config_dict(steps=4)
    values["data"]["shapes"].update(num_clips=2, image_every=2)
    trainer = Trainer(config_from_dict(values), tmp_path / "run", progress=False)
    assert [trainer.batch(k)["video"].shape[2] for k in range(4)] == [4, 1, 4, 1]
    trainer.train()
    assert trainer.step == 4
