"""One pipeline for every model: a diffusers-format open model (a tiny random Wan 2.1) gets what vidiff's
own models have — image-to-video, extension, long video in one pass, evaluation — through the same
VideoPipeline, with diffusers' call names; and context windows on their own."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
from diffusers import WanPipeline  # noqa: E402

from vidiff.errors import VidiffError  # noqa: E402
from vidiff.models.external.random_wan import save_random_wan  # noqa: E402
from vidiff.pipeline import ContextWindows, FrameConditioning, SampleOptions, VideoPipeline  # noqa: E402
from vidiff.pipeline.context_windows import window_starts, window_weights, windowed  # noqa: E402

PROMPT = "a red ball bounces over the table"
SIZE = dict(height=32, width=48)
QUICK = SampleOptions(2, progress=False)


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    return save_random_wan(tmp_path_factory.mktemp("wan1") / "wan-tiny")


@pytest.fixture(scope="module")
def pipe(wan_dir):
    return VideoPipeline.from_pretrained(wan_dir)


def seed(s=0):
    return torch.Generator().manual_seed(s)


# context windows, alone ------------------------------------------------------------------------------
def test_windows_cover_every_frame_and_the_last_is_flush_with_the_end():
    for frames, length, overlap in ((41, 21, 5), (100, 16, 4), (16, 16, 4), (17, 16, 0)):
        starts = window_starts(frames, length, overlap)
        covered = set().union(*(range(s, s + length) for s in starts))
        assert covered == set(range(frames)) and starts[-1] + length == max(frames, length)
        assert all(b - a <= length - overlap for a, b in zip(starts, starts[1:]))
    w = window_weights(8, 3, first=False, last=False)
    assert w.tolist() == [0.25, 0.5, 0.75, 1, 1, 0.75, 0.5, 0.25]
    assert window_weights(8, 3, first=True, last=False)[0] == 1 and window_weights(8, 3, False, True)[-1] == 1
    with pytest.raises(VidiffError, match="overlap"):
        window_starts(40, 8, 8)


def test_windowed_network_is_exact_for_a_per_frame_network_and_cuts_frame_conditions():
    def net(x, log_snr, context, frames):            # per frame, reads a frame condition with x's frame axis
        assert frames.shape[2] == x.shape[2] <= 6 and context.shape == (1, 7)
        return x * 2 + frames[:, :1] + context.sum()
    x, cond = torch.randn(1, 3, 20, 4, 4), torch.randn(1, 4, 20, 4, 4)
    context = torch.ones(1, 7)
    out = windowed(net, 6, 2)(x, torch.zeros(1), context, cond)
    torch.testing.assert_close(out, x * 2 + cond[:, :1] + 7)


# the diffusers call ----------------------------------------------------------------------------------
def test_diffusers_names_give_diffusers_video_as_floats_in_0_1(pipe, wan_dir):
    ref = WanPipeline.from_pretrained(str(wan_dir))
    ref.set_progress_bar_config(disable=True)
    kw = dict(num_frames=9, num_inference_steps=3, guidance_scale=5.0, **SIZE)
    theirs = np.asarray(ref(PROMPT, output_type="np", generator=seed(), **kw).frames)
    ours = pipe(PROMPT, generator=seed(), **kw).frames      # output_type "np" by default, as in diffusers
    assert ours.dtype == np.float32 and 0 <= ours.min() and ours.max() <= 1 and ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 2 / 255
    # guidance_scale 1 or less: no guidance, as in diffusers (not guidance towards the negative prompt)
    below = pipe(PROMPT, **{**kw, "guidance_scale": 0.5}, generator=seed(), output_type="uint8").pixels
    assert np.array_equal(below, pipe(PROMPT, **{**kw, "guidance_scale": 1.0}, generator=seed(), output_type="uint8").pixels)
    pil = pipe(PROMPT, **{**kw, "num_inference_steps": 1}, output_type="pil").frames
    assert len(pil) == 1 and len(pil[0]) == 9 and pil[0][0].size == (48, 32)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_inference_steps": 2, "sampling": SampleOptions(steps=3)}, "set the same thing"),
    ({"latents": torch.zeros(1)}, "use a seeded generator"),
    ({"bogus": 1}, "unknown argument 'bogus'"),
    ({"output_type": "pt"}, "unknown output_type"),
    ({"num_frames": "13"}, "must be a whole number"),
])
def test_a_bad_diffusers_style_call_is_a_one_line_error(pipe, kwargs, message):
    with pytest.raises(VidiffError, match=message):
        pipe(PROMPT, **kwargs)


def test_positional_arguments_after_the_prompt_are_refused(pipe):
    with pytest.raises(TypeError):
        pipe(PROMPT, 9)


# what vidiff is for, on an open model ---------------------------------------------------------------
def test_image_to_video_keeps_the_fitted_image_as_frame_0_and_its_latent(pipe):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 90, 3), np.uint8)          # another aspect: scaled to cover, centre-cropped
    from vidiff.pipeline.inputs import fit_frames
    fitted = fit_frames(image[None], 32, 48, "the image", notice=False)
    for method in ("guidance", "replacement"):
        kw = dict(num_frames=9, sampling=QUICK, conditioning=FrameConditioning(method), **SIZE)
        out = pipe(PROMPT, image=image, output_type="uint8", generator=seed(), **kw).pixels
        assert out.shape == (1, 9, 32, 48, 3) and np.array_equal(out[0, 0], fitted[0])
        latents = pipe(PROMPT, image=image, output_type="latent", generator=seed(), **kw).frames
        encoded = pipe.bundle.codec.encode(torch.from_numpy(fitted).permute(3, 0, 1, 2)[None].float() / 127.5 - 1)
        torch.testing.assert_close(latents[:, :, 0], encoded[:, :, 0])
    plain = pipe(PROMPT, num_frames=9, generator=seed(), sampling=QUICK, output_type="uint8", **SIZE).pixels
    assert np.abs(out[0, 1:].astype(int) - plain[0, 1:]).mean() > 1          # the image changed what follows


def test_extend_an_open_model_window_by_window_keeps_the_given_frames(pipe):
    given = np.random.default_rng(1).integers(0, 255, (9, 32, 48, 3), np.uint8)
    out = pipe.extend(given, PROMPT, 95, seed(), QUICK, output_type="uint8", **SIZE).pixels
    assert out.shape == (1, 95, 32, 48, 3) and np.array_equal(out[0, :9], given)
    with pytest.raises(VidiffError, match="packs 4 frames"):
        pipe.interpolate(given, 2, PROMPT, **SIZE)


def test_a_video_longer_than_the_native_length_runs_in_context_windows(pipe):
    long = pipe(PROMPT, num_frames=161, generator=seed(), sampling=QUICK, output_type="latent", **SIZE).frames
    assert long.shape[2] == 41                      # 161 frames: 41 latent frames in windows of 21
    # one window holding the whole clip is the plain model; smaller windows are not
    kw = dict(num_frames=9, sampling=QUICK, output_type="latent", **SIZE)
    whole = pipe(PROMPT, generator=seed(), **kw).frames
    windows = lambda length, overlap=None: pipe(PROMPT, generator=seed(), **kw,   # noqa: E731
                                                context_windows=ContextWindows(length, overlap)).frames
    torch.testing.assert_close(windows(3), whole)
    assert not torch.equal(windows(2, 1), whole)


def vidiff(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "vidiff", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
def test_cli_image_to_video_extend_long_video_and_eval_on_an_open_model(wan_dir, tmp_path):
    from PIL import Image
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 96, 3), np.uint8)).save(tmp_path / "first.png")
    common = ["--model", wan_dir, "--size", "32x48", "--steps", "2"]
    r = vidiff("generate", PROMPT, "--image", tmp_path / "first.png", "--frames", "9", *common, "--out", tmp_path / "i2v.mp4")
    assert r.returncode == 0 and (tmp_path / "i2v.mp4").is_file(), r.stderr[-1500:]
    from vidiff.data.io import read_video
    r = vidiff("generate", PROMPT, "--frames", "101", *common, "--scale", "1", "--out", tmp_path / "long.mp4")
    assert r.returncode == 0, r.stderr[-1500:]
    assert read_video(tmp_path / "long.mp4").shape[:3] == (101, 32, 48)
    r = vidiff("extend", tmp_path / "i2v.mp4", PROMPT, "--frames", "30", *common, "--out", tmp_path / "ext.mp4")
    assert r.returncode == 0 and (tmp_path / "ext.mp4").is_file(), r.stderr[-1500:]
    assert read_video(tmp_path / "ext.mp4").shape[:3] == (30, 128, 192)        # small frames: enlarged 4x
    (tmp_path / "prompts.txt").write_text(f"{PROMPT}\na blue ball bounces\n")
    r = vidiff("eval", "--model", wan_dir, "--prompts", tmp_path / "prompts.txt", "--frames", "9", "--size", "32x48",
               "--steps", "2", "--out", tmp_path / "ev")
    assert r.returncode == 0, r.stderr[-1500:]
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert len(report["videos"]) == 2 and "flicker" in json.dumps(report)
    r = vidiff("eval", "--model", wan_dir, "--out", tmp_path / "ev2")
    assert r.returncode == 2 and "--prompts FILE" in r.stderr and r.stderr.count("\n") == 1


def test_options_that_do_not_apply_are_refused_before_loading(wan_dir, tmp_path):
    r = vidiff("generate", PROMPT, "--model", wan_dir, "--offload", "gpu", "--out", tmp_path / "x.mp4")
    assert r.returncode == 2 and "unknown --offload" in r.stderr
    r = vidiff("generate", "a red circle bouncing", "--offload", "model", "--out", tmp_path / "x.mp4")
    assert r.returncode == 2 and "--offload is for models of separate components" in r.stderr
    for what in ("sampler", "spacing"):          # before a (here: missing) model loads
        r = vidiff("generate", PROMPT, "--model", tmp_path / "absent", f"--{what}", "bogus", "--out", tmp_path / "x.mp4")
        assert r.returncode == 2 and f"unknown {what} (--{what}) 'bogus'; choose one of" in r.stderr, r.stderr
    r = vidiff("generate", PROMPT, "--model", wan_dir, "--spacing", "uniform", "--sampler", "scheduler",
               "--out", tmp_path / "x.mp4")
    assert r.returncode == 2 and "takes its own steps (--spacing model)" in r.stderr
    help_text = vidiff("generate", "--help").stdout
    assert "scheduler" in help_text and "model (the directory" in help_text
