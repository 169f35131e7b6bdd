"""Masked-frame models (issue: frame conditioning): the masks they train on, the zero-initialised
frame input, starting from a text-to-video checkpoint, and a model that learns to use given frames."""
import numpy as np
import pytest
import torch

from conftest import tiny_config_dict, train_frame_conditioned
from vidiff.checkpoint import initialize_from, write_checkpoint
from vidiff.config import config_from_dict
from vidiff.diffusion import diffusion_loss
from vidiff.diffusion.conditioning import MASK_KINDS, draw_masks, frame_condition, frame_mask
from vidiff.errors import VidiffError
from vidiff.models import build_model
from vidiff.pipeline import FrameConditioning, KnownFrames, SampleOptions, VideoPipeline, sample_video
from vidiff.pipeline.windows import extension_plan, interpolation_plan
from vidiff.training import Trainer


def test_training_masks_follow_the_weights_and_never_give_every_frame():
    g = torch.Generator().manual_seed(0)
    masks = draw_masks({k: 1.0 for k in MASK_KINDS}, 16, 2000, g)
    assert masks.shape == (2000, 16) and not masks.all(1).any()
    share_none = (~masks.any(1)).float().mean().item()
    assert 0.15 < share_none < 0.25                      # 'none' one kind in five
    first_only = masks[:, 0] & ~masks[:, 1:].any(1)
    assert 0.15 < first_only.float().mean().item() < 0.25
    only_first = draw_masks({"first": 1.0, "none": 0.0}, 16, 50, g)
    assert only_first[:, 0].all() and not only_first[:, 1:].any()
    assert not draw_masks({"first": 1.0}, 1, 5, g).any()          # an image is never conditioned on itself


def test_frame_condition_holds_the_known_frames_and_the_mask():
    known = torch.randn(2, 4, 5, 3, 3)
    mask = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 1]], dtype=torch.bool)
    c = frame_condition(known, mask)
    assert c.shape == (2, 5, 5, 3, 3)
    assert torch.equal(c[1, :4, 4], known[1, :, 4]) and c[0, :4, 1:].abs().sum() == 0
    assert torch.equal(c[:, 4, :, 0, 0], mask.float())
    assert frame_condition(known, frame_mask("none", 5)).abs().sum() == 0


def test_loss_counts_only_the_unknown_frames():
    x0, noise, out = torch.randn(3, 2, 4, 2, 2), torch.randn(3, 2, 4, 2, 2), torch.randn(3, 2, 4, 2, 2)
    log_snr = torch.zeros(3)
    where = torch.tensor([False, True, True, True])[None, None, :, None, None]
    a = diffusion_loss(out, x0, noise, log_snr, "eps", where=where)
    out2 = out.clone()
    out2[:, :, 0] += 10
    assert torch.allclose(a, diffusion_loss(out2, x0, noise, log_snr, "eps", where=where))
    assert torch.allclose(diffusion_loss(out, x0, noise, log_snr, "eps"),
                          diffusion_loss(out, x0, noise, log_snr, "eps", where=torch.ones(1, 1, 4, 1, 1)))


def test_a_masked_frame_model_starts_as_the_text_to_video_model_it_continues(tmp_path):
    cfg = config_from_dict(tiny_config_dict())
    torch.manual_seed(0)
    text_model = build_model(cfg.model)
    with torch.no_grad():
        for p in text_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    write_checkpoint(tmp_path / "t2v", cfg, text_model)
    values = tiny_config_dict()
    values["model"]["frame_conditioning"] = True
    masked = build_model(config_from_dict(values).model)
    added = initialize_from(masked, tmp_path / "t2v", "unet3d")
    assert added == ["backbone.frame_stem.bias", "backbone.frame_stem.weight"]
    x, log_snr = torch.randn(2, 3, 4, 16, 16), torch.tensor([0.0, 2.0])
    ids = text_model.tokenizer.encode(["a red circle bouncing"] * 2)
    frames = frame_condition(torch.randn(2, 3, 4, 16, 16), frame_mask("first", 4))
    with torch.no_grad():
        assert torch.equal(text_model(x, log_snr, ids=ids), masked(x, log_snr, frames=frames, ids=ids))
    wider = tiny_config_dict()
    wider["model"]["unet3d"]["base_channels"] = 32
    with pytest.raises(VidiffError, match=r"'backbone\..*' has shape"):
        initialize_from(build_model(config_from_dict(wider).model), tmp_path / "t2v", "unet3d")


@pytest.fixture(scope="module")
def masked_run(tmp_path_factory):
    """A tiny masked-frame model trained on two clips with the empty prompt half the time."""
    values = tiny_config_dict(steps=300, lr=2e-3, warmup_steps=10, checkpoint_every=1000, cfg_dropout=0.5,
                              frame_masks={"none": 0.0, "first": 1.0, "first_k": 0.0, "every_k": 0.0, "random": 0.0,
                                           "noise": 0.0})
    run = tmp_path_factory.mktemp("masked") / "run"
    trainer = train_frame_conditioned(values, run, num_clips=2)
    return run, [trainer.task.dataset[i]["video"] for i in range(2)]


def test_a_trained_masked_frame_model_continues_the_clip_whose_first_frame_it_is_given(masked_run):
    run, clips = masked_run
    pipe = VideoPipeline.from_pretrained(run)
    errors = np.zeros((2, 2))
    for i, clip in enumerate(clips):
        known = clip[None]
        empty = pipe._encode([""], None, 1.0)
        x = sample_video(pipe.bundle, *empty, tuple(clip.shape), SampleOptions(10, 1.0), torch.Generator().manual_seed(0),
                         known=KnownFrames(known, frame_mask("first", 4)))
        assert torch.equal(x[0, :, 0], clip[:, 0])                       # the given frame, exactly
        for j, other in enumerate(clips):
            errors[i, j] = (x[0, :, 1:] - other[:, 1:]).pow(2).mean()
    assert errors[0, 0] < 0.3 * errors[0, 1] and errors[1, 1] < 0.3 * errors[1, 0], errors


def test_image_extend_and_interpolate_keep_the_given_frames_and_lengths(masked_run):
    run, clips = masked_run
    pipe = VideoPipeline.from_pretrained(run)
    video = ((clips[0].permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()     # (4, 16, 16, 3)
    g = lambda: torch.Generator().manual_seed(0)
    kw = dict(sampling=SampleOptions(3, progress=False))
    for method in ("trained", "guidance", "replacement"):
        out = pipe("a red circle bouncing", image=video[0], generator=g(), conditioning=FrameConditioning(method), **kw).pixels[0]
        assert out.shape == (4, 16, 16, 3) and np.array_equal(out[0], video[0])
    big = np.repeat(np.repeat(video, 3, axis=1), 3, axis=2)           # 48x48: resized back exactly, with a notice
    longer = pipe.extend(big, "a red circle bouncing", num_frames=11, context=2, generator=g(), **kw).pixels[0]
    assert longer.shape == (11, 16, 16, 3) and np.array_equal(longer[:4], video)
    wide = np.zeros((2, 48, 64, 3), np.uint8)                          # another aspect: centre-cropped
    assert pipe.extend(wide, "a red circle bouncing", num_frames=5, generator=g(), **kw).pixels.shape == (1, 5, 16, 16, 3)
    more = pipe.interpolate(video, factor=3, generator=g(), **kw).pixels[0]
    assert more.shape == (10, 16, 16, 3) and np.array_equal(more[::3], video)


def test_history_guidance_steers_by_the_given_frames_and_is_the_models_own_setting(masked_run):
    run, clips = masked_run
    pipe = VideoPipeline.from_pretrained(run)
    video = ((clips[0].permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
    make = lambda history=None: pipe("a red circle bouncing", image=video[0], generator=torch.Generator().manual_seed(0),
                                     sampling=SampleOptions(3, progress=False),
                                     conditioning=FrameConditioning(history=history)).pixels[0]
    plain, guided = make(), make(3.0)
    assert np.array_equal(make(1.0), plain) and not np.array_equal(guided, plain)
    assert np.array_equal(guided[0], video[0])                            # the given frame, still exactly
    pipe.bundle.history_guidance = 3.0                                    # a recipe's own scale is the default
    assert np.array_equal(make(), guided)
    for conditioning, match in ((FrameConditioning("guidance", history=2.0), "needs the trained method"),
                                (FrameConditioning(history=-1.0), "history guidance scale")):
        with pytest.raises(VidiffError, match=match):
            pipe("a red circle bouncing", image=video[0], sampling=SampleOptions(1, progress=False),
                 conditioning=conditioning)


def test_window_plans():
    assert extension_plan(4, 11, 4, 2) == [2, 2, 2, 1]
    assert extension_plan(16, 64, 16, 4) == [12, 12, 12, 12]
    assert interpolation_plan(4, 3, 4) == [(0, [0, 1]), (3, [1, 2]), (6, [2, 3])]
    assert interpolation_plan(5, 4, 16) == [(0, [0, 1, 2, 3]), (12, [3, 4])]
    for bad, match in ((lambda: extension_plan(8, 8, 16, 4), "already has 8"),
                       (lambda: extension_plan(8, 20, 16, 16), "--context"),
                       (lambda: interpolation_plan(1, 4, 16), "at least 2"),
                       (lambda: interpolation_plan(3, 16, 16), "--factor")):
        with pytest.raises(VidiffError, match=match):
            bad()


def test_bad_conditioning_input_is_a_one_line_error(masked_run, tmp_path):
    run, clips = masked_run
    pipe = VideoPipeline.from_pretrained(run)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    cases = [(dict(image=tmp_path / "broken.png"), "cannot read image"),
             (dict(image=np.zeros((16, 16), np.uint8)), "RGB uint8"),
             (dict(image=np.zeros((16, 16, 3), np.uint8), conditioning=FrameConditioning("magic")), "unknown conditioning method")]
    for kwargs, match in cases:
        with pytest.raises(VidiffError, match=match):
            pipe("a red circle bouncing", sampling=SampleOptions(1, progress=False), **kwargs)


def test_cli_generate_image_extend_and_interpolate(masked_run, tmp_path):
    import subprocess
    import sys
    from vidiff.data.io import read_video, save_video
    run, clips = masked_run
    video = ((clips[0].permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
    save_video(video, tmp_path / "in.gif")
    from PIL import Image
    Image.fromarray(video[0]).save(tmp_path / "first.png")
    common = ["--model", str(run), "--steps", "2", "--scale", "1"]
    cli = lambda *args: subprocess.run([sys.executable, "-m", "vidiff", *args, *common], capture_output=True, text=True,
                                       timeout=300)
    r = cli("generate", "a red circle bouncing", "--image", str(tmp_path / "first.png"), "--out", str(tmp_path / "i.gif"))
    assert r.returncode == 0, r.stderr[-2000:]
    r = cli("extend", str(tmp_path / "in.gif"), "a red circle bouncing", "--frames", "9", "--history-guidance", "2",
            "--out", str(tmp_path / "e.gif"))
    assert r.returncode == 0 and read_video(tmp_path / "e.gif").shape[0] == 9, r.stderr[-2000:]
    r = cli("interpolate", str(tmp_path / "in.gif"), "--factor", "2", "--method", "replacement",
            "--out", str(tmp_path / "p.gif"))
    assert r.returncode == 0 and read_video(tmp_path / "p.gif").shape[0] == 7, r.stderr[-2000:]
    r = cli("interpolate", str(tmp_path / "in.gif"), "--factor", "9", "--out", str(tmp_path / "q.gif"))
    assert r.returncode == 2 and r.stderr.strip().startswith("error: --factor") and "Traceback" not in r.stderr
