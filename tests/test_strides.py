"""Frame strides (issue: frame conditioning, hierarchical long video): clips drawn at 1/s of the frame
rate, a model that reads the stride (zero-initialised, so it continues a stride-less checkpoint
exactly), learns it, and the hierarchical extension built on it."""
import numpy as np
import pytest
import torch

from conftest import tiny_config_dict, train_frame_conditioned
from vidiff.checkpoint import initialize_from, write_checkpoint
from vidiff.config import DataConfig, ShapesConfig, config_from_dict
from vidiff.data import ShapesDataset
from vidiff.errors import VidiffError
from vidiff.models import build_model
from vidiff.pipeline import SampleOptions, VideoPipeline, sample_video
from vidiff.training import Trainer


def strided_config(**train) -> dict:
    values = tiny_config_dict(**train)
    values["model"]["stride_conditioning"] = True
    values["data"]["shapes"]["strides"] = [1, 3]
    return values


def test_a_strided_clip_is_every_nth_frame_of_the_same_world():
    one = ShapesDataset(DataConfig(frames=46))
    three = ShapesDataset(DataConfig(shapes=ShapesConfig(strides=[3])))
    for i in range(3):
        a, b = one[i], three[i]
        assert b["stride"] == 3 and a["stride"] == 1 and a["caption"] == b["caption"]
        for ta, tb in zip(a["tracks"], b["tracks"]):
            assert np.allclose(ta.positions[::3], tb.positions)
            assert np.allclose(tb.positions[1:] - tb.positions[:-1], tb.velocities[:-1])
        assert torch.equal(a["video"][:, ::3], b["video"])
    # one stride: the clips drawn before strides existed, unchanged
    assert torch.equal(ShapesDataset(DataConfig())[7]["video"], ShapesDataset(DataConfig(frames=16))[7]["video"])
    mixed = ShapesDataset(DataConfig(shapes=ShapesConfig(strides=[1, 2, 4], num_clips=1)))
    assert {mixed[i]["stride"] for i in range(40)} == {1, 2, 4}          # a fixed clip, seen at every stride


def test_bad_strides_are_one_line_errors():
    with pytest.raises(VidiffError, match="stride_conditioning"):
        config_from_dict({"data": {"shapes": {"strides": [1, 2]}}})
    with pytest.raises(VidiffError, match="strides must be 1 to 8"):
        config_from_dict({"model": {"stride_conditioning": True}, "data": {"shapes": {"strides": [1, 9]}}})
    model = build_model(config_from_dict(tiny_config_dict()).model)
    with pytest.raises(VidiffError, match="not trained with frame strides"):
        model.encode(model.tokenizer.encode(["a red circle bouncing"]), 2)


def test_a_stride_conditioned_model_starts_as_the_model_it_continues(tmp_path):
    cfg = config_from_dict(tiny_config_dict())
    torch.manual_seed(0)
    plain = build_model(cfg.model)
    write_checkpoint(tmp_path / "plain", cfg, plain)
    strided = build_model(config_from_dict(strided_config()).model)
    assert initialize_from(strided, tmp_path / "plain", "unet3d") == ["stride_embed.weight"]
    x, log_snr = torch.randn(2, 3, 4, 16, 16), torch.tensor([0.0, 2.0])
    ids = plain.tokenizer.encode(["a red circle bouncing"] * 2)
    with torch.no_grad():
        assert torch.equal(plain(x, log_snr, ids=ids), strided(x, log_snr, ids=ids, stride=torch.tensor([1, 3])))


@pytest.fixture(scope="module")
def strided_run(tmp_path_factory):
    """A tiny stride- and frame-conditioned model trained on one clip, seen at strides 1 and 3."""
    values = strided_config(steps=600, lr=2e-3, warmup_steps=10, checkpoint_every=1000, cfg_dropout=0.0,
                            frame_masks={"none": 0.8, "first": 0.0, "first_k": 0.1, "every_k": 0.1, "random": 0.0,
                                         "noise": 0.0})
    run = tmp_path_factory.mktemp("strided") / "run"
    trainer = train_frame_conditioned(values, run, num_clips=1)
    data = trainer.task.dataset
    by_stride = {}
    for i in range(20):
        by_stride.setdefault(data[i]["stride"], data[i])
    return run, by_stride


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
def test_a_trained_model_makes_the_clip_of_the_stride_it_is_asked_for(strided_run):
    run, clips = strided_run
    pipe = VideoPipeline.from_pretrained(run)
    errors = {}
    for stride in (1, 3):
        cond, null = pipe.encode_prompt(clips[1]["caption"], stride=stride)
        x = sample_video(pipe.bundle, cond, null, tuple(clips[1]["video"].shape),
                         SampleOptions(10, 1.0), torch.Generator().manual_seed(0))
        errors[stride] = {s: (x[0] - clips[s]["video"]).pow(2).mean().item() for s in (1, 3)}
    assert errors[1][1] < 0.5 * errors[1][3] and errors[3][3] < 0.5 * errors[3][1], errors


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
def test_hierarchical_extension_keeps_the_video_and_reaches_the_length(strided_run, tmp_path):
    run, clips = strided_run
    pipe = VideoPipeline.from_pretrained(run)
    video = ((clips[1]["video"].permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()   # (4, 16, 16, 3)
    kw = dict(sampling=SampleOptions(3, progress=False), generator=torch.Generator().manual_seed(0))
    out = pipe.extend(video, clips[1]["caption"], num_frames=13, mode="hierarchical", **kw).pixels[0]
    assert out.shape == (13, 16, 16, 3) and np.array_equal(out[:4], video)
    with pytest.raises(VidiffError, match="frame strides 1, 3"):
        pipe.extend(video, clips[1]["caption"], num_frames=13, mode="hierarchical", stride=2, **kw)
    with pytest.raises(VidiffError, match="unknown extension mode"):
        pipe.extend(video, clips[1]["caption"], num_frames=13, mode="sideways", **kw)
    from typer.testing import CliRunner
    from vidiff.cli import app
    from vidiff.data.io import save_video
    save_video(video, tmp_path / "in.mp4")
    result = CliRunner().invoke(app, ["extend", str(tmp_path / "in.mp4"), clips[1]["caption"], "--frames", "10",
                                      "--mode", "hierarchical", "--model", str(run), "--steps", "2",
                                      "--out", str(tmp_path / "long.mp4")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "long.mp4").exists()
