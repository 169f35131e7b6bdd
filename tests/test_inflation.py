"""From image models to video (issue: scarce video): inflating an image checkpoint into a video model
(temporal layers start as identity, exactly), and freezing all but some parameters."""
import numpy as np
import pytest
import torch

from conftest import tiny_config_dict
from vidiff.checkpoint import load_model
from vidiff.config import config_from_dict
from vidiff.errors import VidiffError
from vidiff.training import Trainer


def image_run(tmp_path, model_type="unet3d", **model):
    values = tiny_config_dict(steps=3, checkpoint_every=3)
    values["data"]["frames"] = 1
    if model_type == "dit":
        values["model"] = {"type": "dit", "dit": {"width": 32, "depth": 1, "head_dim": 16, **model},
                           "text": values["model"]["text"]}
    Trainer(config_from_dict(values), tmp_path / "image", progress=False).train()
    return values


@pytest.mark.parametrize("model_type", ["unet3d", "dit"])
def test_an_inflated_image_model_makes_the_image_models_frames_one_by_one(tmp_path, model_type):
    values = image_run(tmp_path, model_type)
    image, _, _ = load_model(tmp_path / "image")
    video_values = {**values, "data": {**values["data"], "frames": 4},
                    "train": {**values["train"], "init_from": str(tmp_path / "image")}}
    video = Trainer(config_from_dict(video_values), tmp_path / "video", progress=False).model.eval()
    torch.manual_seed(0)
    x, log_snr = torch.randn(2, 3, 4, 16, 16), torch.tensor([0.5, -1.0])
    ids = image.tokenizer.encode(["a red circle bouncing", "a blue square bouncing"])
    with torch.no_grad():
        together = video(x, log_snr, ids=ids)
        alone = torch.cat([image.eval()(x[:, :, t:t + 1], log_snr, ids=ids) for t in range(4)], dim=2)
    assert torch.allclose(together, alone, atol=1e-5), (together - alone).abs().max()


def test_inflating_a_dit_with_full_attention_is_a_clear_error(tmp_path):
    values = image_run(tmp_path, "dit", attention="full")
    video_values = {**values, "data": {**values["data"], "frames": 4},
                    "train": {**values["train"], "init_from": str(tmp_path / "image")}}
    with pytest.raises(VidiffError, match="cannot inflate .* factorized"):
        Trainer(config_from_dict(video_values), tmp_path / "video", progress=False)


def test_frozen_parameters_are_bit_identical_and_not_in_the_optimizer(tmp_path):
    image_run(tmp_path)          # AnimateDiff's setting: motion modules trained on a frozen image model
    values = tiny_config_dict(steps=3, trainable="temporal", init_from=str(tmp_path / "image"))
    trainer = Trainer(config_from_dict(values), tmp_path / "run", progress=False)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    temporal = {n for n in trainer.trainable}
    assert changed and changed <= temporal and all(".temporal." in n or "_t." in n for n in temporal)
    frozen = [p for n, p in trainer.model.named_parameters() if n not in temporal]
    assert frozen and not any(id(p) in optimized for p in frozen)
    with pytest.raises(VidiffError, match="matches no parameter"):
        Trainer(config_from_dict(tiny_config_dict(trainable="backbone.nothing*")), tmp_path / "run2", progress=False)


def test_translated_noise_moves_frame_zero_by_the_commanded_motion():
    from vidiff.pipeline.zero_shot import translated_noise
    n = translated_noise(2, (3, 4, 8, 8), (1.0, 2.0), torch.Generator().manual_seed(0))
    assert n.shape == (2, 3, 4, 8, 8)
    assert torch.equal(n[:, :, 3], torch.roll(n[:, :, 0], shifts=(6, 3), dims=(-2, -1)))
    half = translated_noise(1, (3, 3, 16, 16), (0.5, 0.0), torch.Generator().manual_seed(0))
    assert torch.allclose(half[:, :, 2], torch.roll(half[:, :, 0], 1, dims=-1), atol=1e-4)
    assert abs(half[:, :, 1].std().item() - 1) < 0.01


def test_a_sample_split_at_a_grid_point_is_the_whole_sample_and_the_moved_start_moves(tmp_path):
    from functools import partial
    from vidiff.diffusion import SCHEDULES, sampling_grid
    from vidiff.pipeline import VideoPipeline
    from vidiff.pipeline.sampling import GridSpan, SampleOptions, sample_video
    from vidiff.pipeline.zero_shot import motion_steps, moving_start
    image_run(tmp_path)
    pipe = VideoPipeline.from_pretrained(tmp_path / "image")
    cond, null = pipe.encode_prompt("a red circle bouncing")
    sample = partial(sample_video, pipe.bundle, cond, null, shape=(3, 2, 16, 16), options=SampleOptions(6))
    noise = torch.randn(1, 3, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    whole = sample(span=GridSpan(noise))
    middle = sample(span=GridSpan(noise, stop=2))
    assert not torch.allclose(middle, whole, atol=1e-2)
    assert torch.allclose(sample(span=GridSpan(middle, start=2)), whole, atol=1e-5)
    with pytest.raises(ValueError, match="DDIM"):
        sample(span=GridSpan(noise, stop=2), options=SampleOptions(6, sampler="ddpm"))
    assert motion_steps(25) == (5, 8) and motion_steps(50) == (10, 16) and motion_steps(3) == (0, 1)
    grid = sampling_grid(SCHEDULES["cosine"], 25)
    start, t1 = moving_start(partial(sample_video, pipe.bundle, cond, null, options=SampleOptions(25)), 1,
                             (3, 4, 16, 16), grid, (2.0, 1.0), torch.Generator().manual_seed(0))
    assert t1 == 5 and start.shape == (1, 3, 4, 16, 16)
    assert abs(start.std().item() - 1) < 0.2    # at t1's noise level, as the sampler expects
    from vidiff.pipeline.zero_shot import slide
    first = torch.zeros(1, 1, 1, 8, 8)
    first[..., 2, 3] = 1.0
    moved = slide(first, 4, (1.0, 2.0))
    assert moved[0, 0, 2, 6, 5] == 1.0 and moved[0, 0, 2].sum() == 1.0      # frame 2: (3, 2) + 2 x (1, 2)
    assert moved[0, 0, 3].sum() == 0.0                                      # frame 3: off the bottom edge, gone
    assert torch.allclose(slide(first, 2, (0.5, 0.0))[0, 0, 1, 2, 3:5], torch.tensor([0.5, 0.5]))


def test_zero_shot_cross_frame_attention_and_its_errors(tmp_path):
    from vidiff.pipeline import SampleOptions, VideoPipeline, ZeroShot
    image_run(tmp_path)
    pipe = VideoPipeline.from_pretrained(tmp_path / "image")
    quick = SampleOptions(3, progress=False)
    still = pipe("a red circle bouncing", num_frames=3, sampling=quick, zero_shot=ZeroShot((0.0, 0.0)),
                 generator=torch.Generator().manual_seed(0)).pixels[0]
    assert np.array_equal(still[0], still[1]) and np.array_equal(still[0], still[2])   # same noise, frame 0's keys
    moving = pipe("a red circle bouncing", num_frames=3, sampling=quick, zero_shot=ZeroShot((2.0, 0.0)),
                  generator=torch.Generator().manual_seed(0)).pixels[0]
    assert moving.shape == (3, 16, 16, 3) and not np.array_equal(moving[0], moving[2])
    assert not any(m.cross_frame for m in pipe.model.modules() if hasattr(m, "cross_frame"))   # switched off after
    layer = next(m for m in pipe.model.modules() if hasattr(m, "cross_frame"))
    x = torch.randn(2 * 3, layer.norm_self.normalized_shape[0], 4, 4).contiguous(memory_format=torch.channels_last)
    ctx, mask = torch.randn(2, 5, 32), torch.ones(2, 5, dtype=torch.bool)
    layer.cross_frame = True
    out = layer(x, ctx, mask).reshape(2, 3, -1)
    repeated = x.reshape(2, 3, *x.shape[1:])[:, :1].expand(2, 3, *x.shape[1:]).reshape(x.shape)
    same = layer(repeated.contiguous(memory_format=torch.channels_last), ctx, mask).reshape(2, 3, -1)
    layer.cross_frame = False
    plain = layer(x, ctx, mask).reshape(2, 3, -1)
    assert out.shape == plain.shape and torch.allclose(out[:, 0], plain[:, 0], atol=1e-5)   # frame 0 reads itself
    assert not torch.allclose(out[:, 1], plain[:, 1], atol=1e-3)                          # others read frame 0
    assert torch.allclose(same[:, 0], same[:, 2], atol=1e-5)
    values = tiny_config_dict(steps=1)
    values["model"] = {"type": "dit", "dit": {"width": 32, "depth": 1, "head_dim": 16}, "text": values["model"]["text"]}
    Trainer(config_from_dict(values), tmp_path / "dit", progress=False).train()
    with pytest.raises(VidiffError, match="needs a U-Net with spatial attention"):
        VideoPipeline.from_pretrained(tmp_path / "dit")("a red circle", num_frames=2, sampling=SampleOptions(1, progress=False),
                                                         zero_shot=ZeroShot())


def test_tune_learns_one_clip_with_temporal_layers_and_queries_only(tmp_path):
    import subprocess
    import sys
    from vidiff.data.io import save_video
    from vidiff.training.diffusion import DiffusionTask  # noqa: F401
    values = tiny_config_dict(steps=3, checkpoint_every=3)
    values["data"]["shapes"]["num_clips"] = 1
    trainer = Trainer(config_from_dict(values), tmp_path / "base", progress=False)
    trainer.train()
    clip = trainer.task.dataset[0]
    from vidiff.data.io import to_uint8
    save_video(to_uint8(clip["video"]), tmp_path / "clip.mp4")
    r = subprocess.run([sys.executable, "-m", "vidiff", "tune", str(tmp_path / "clip.mp4"), clip["caption"],
                        "--model", str(tmp_path / "base"), "--out", str(tmp_path / "tuned"), "--steps", "4",
                        "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    base, _, _ = load_model(tmp_path / "base")
    tuned, cfg, _ = load_model(tmp_path / "tuned")
    assert cfg.train.trainable == "temporal,backbone.*.to_q.*" and (tmp_path / "tuned" / "clip" / "clip.txt").is_file()
    b, t = dict(base.named_parameters()), dict(tuned.named_parameters())
    changed = {n for n in b if not torch.equal(b[n], t[n])}
    assert changed and all(".temporal." in n or "conv_t" in n or "norm_t" in n or "to_q" in n for n in changed)
    r = subprocess.run([sys.executable, "-m", "vidiff", "tune", str(tmp_path / "nope.mp4"), "a red circle",
                        "--out", str(tmp_path / "t2")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "not found" in r.stderr
