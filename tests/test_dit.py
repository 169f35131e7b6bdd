"""The space-time DiT backbone: shapes, adaLN-Zero start, 3D rotary positions, extrapolation to
unseen clip lengths and sizes, activation checkpointing, and learning one clip."""
import pytest
import torch

from conftest import tiny_config_dict
from vidiff.config import DiTConfig, ModelConfig, TextConfig, config_from_dict
from vidiff.models import build_model
from vidiff.models.dit import rotary_3d
from vidiff.models.layers import apply_rotary
from test_training import assert_overfits_one_clip


def tiny_dit(attention="factorized", randomize=False, **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(type="dit", dit=DiTConfig(width=32, depth=2, head_dim=16, patch=[1, 2, 2], attention=attention, **kw),
                      text=TextConfig(dim=32, layers=1, heads=2))
    model = build_model(cfg)
    if randomize:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
    return model


def run(model, x):
    ids = model.tokenizer.encode(["a red circle bouncing"] * x.shape[0])
    return model(x, torch.zeros(x.shape[0]), ids=ids)


@pytest.mark.parametrize("attention", ["factorized", "full"])
@pytest.mark.parametrize("shape", [(2, 3, 1, 8, 8), (1, 3, 5, 8, 12)])
def test_output_has_the_input_shape(attention, shape):
    x = torch.randn(shape)
    assert run(tiny_dit(attention, randomize=True), x).shape == x.shape


def test_adaln_zero_makes_the_untrained_model_output_zero():
    assert run(tiny_dit(), torch.randn(1, 3, 2, 8, 8)).abs().max() == 0


def test_3d_rotary_scores_depend_only_on_the_offset():
    cos, sin = rotary_3d(4, 5, 6, 32, "cpu")
    q, k = torch.randn(32), torch.randn(32)
    index = lambda t, h, w: (t * 5 + h) * 6 + w
    score = lambda a, b: (apply_rotary(q, cos[index(*a)], sin[index(*a)]) * apply_rotary(k, cos[index(*b)], sin[index(*b)])).sum()
    torch.testing.assert_close(score((0, 1, 2), (2, 3, 5)), score((1, 2, 0), (3, 4, 3)))
    assert (score((0, 0, 0), (1, 0, 0)) - score((0, 0, 0), (0, 1, 0))).abs() > 1e-4   # the axes differ


@pytest.mark.parametrize("attention", ["factorized", "full"])
def test_runs_on_longer_clips_and_larger_frames_than_trained(attention):
    model = tiny_dit(attention, randomize=True).eval()
    with torch.no_grad():
        out = run(model, torch.randn(1, 3, 16, 16, 16))      # trained at 4x8x8 in the tests around this one
    assert out.shape == (1, 3, 16, 16, 16) and torch.isfinite(out).all()


def test_time_enters_only_through_relative_offsets():
    """With factorized attention a still scene of 16 frames gives every frame exactly the output of the
    1-frame clip: time enters only through rotary offsets, so clip length is free. A table of absolute
    time positions (of the trained length) would make the frames differ, or 16 frames not run at all."""
    model = tiny_dit("factorized", randomize=True).eval()
    still = torch.randn(1, 3, 1, 8, 8)
    with torch.no_grad():
        one, long = run(model, still), run(model, still.repeat(1, 1, 16, 1, 1))
    torch.testing.assert_close(long, one.repeat(1, 1, 16, 1, 1), atol=1e-5, rtol=1e-4)


def test_bad_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="divisible by the patch"):
        run(tiny_dit(), torch.randn(1, 3, 2, 9, 8))


def test_activation_checkpointing_gives_the_same_gradients():
    x = torch.randn(2, 3, 2, 8, 8)
    grads = []
    for flag in (False, True):
        model = tiny_dit(randomize=True, activation_checkpointing=flag).train()
        run(model, x).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_dit_overfits_a_single_clip(tmp_path):
    values = tiny_config_dict(steps=300, lr=1e-3, warmup_steps=10, checkpoint_every=1000, cfg_dropout=0.0)
    values["model"] = {"type": "dit", "dit": {"width": 64, "depth": 2, "head_dim": 16, "patch": [1, 2, 2]},
                       "text": {"dim": 32, "layers": 1, "heads": 2}}
    assert_overfits_one_clip(values, tmp_path / "run")


def test_a_dit_checkpoint_generates_through_the_pipeline(tmp_path):
    from vidiff.pipeline import SampleOptions, VideoPipeline
    from vidiff.checkpoint import write_checkpoint
    values = tiny_config_dict()
    values["model"] = {"type": "dit", "dit": {"width": 32, "depth": 1, "head_dim": 16, "patch": [2, 2, 2]},
                       "text": {"dim": 32, "layers": 1, "heads": 2}}
    cfg = config_from_dict(values)
    write_checkpoint(tmp_path / "dit", cfg, tiny_dit_from(cfg))
    pipe = VideoPipeline.from_pretrained(tmp_path / "dit", device="cpu")
    assert pipe("a red circle bouncing", num_frames=6, sampling=SampleOptions(2, progress=False)).pixels.shape == (1, 6, 16, 16, 3)
    from vidiff.errors import VidiffError
    with pytest.raises(VidiffError, match="a multiple of 2"):
        pipe("a red circle bouncing", num_frames=5, sampling=SampleOptions(2, progress=False))


def tiny_dit_from(cfg):
    torch.manual_seed(0)
    return build_model(cfg.model)
