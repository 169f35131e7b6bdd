import json

import numpy as np
import pytest
import torch
from PIL import Image

from vidiff.data.io import read_video
from vidiff.errors import VidiffError
from vidiff.models import build_model
from vidiff.pipeline import DEFAULT_MODEL, FrameConditioning, SampleOptions, VideoPipeline, VideoPipelineOutput, ZeroShot
from vidiff.checkpoint import export_pretrained, write_checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from conftest import tiny_config_dict
    from vidiff.config import config_from_dict
    cfg = config_from_dict(tiny_config_dict())
    torch.manual_seed(0)
    model = build_model(cfg.model)
    with torch.no_grad():  # untrained but not the zero-initialised identity, so outputs depend on inputs
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", cfg, model)


SAMPLING = ("steps", "guidance", "sampler", "spacing", "eta", "callback")


def generate(pipe, seed=0, prompt="a red circle bouncing", **kwargs):
    """A video of 3 frames in 2 steps; sampling options among kwargs go into the SampleOptions group."""
    sampling = {"steps": 2, "progress": False, **{k: kwargs.pop(k) for k in SAMPLING if k in kwargs}}
    args = dict(num_frames=3, generator=torch.Generator().manual_seed(seed), sampling=SampleOptions(**sampling))
    return pipe(prompt, **{**args, **kwargs})


def test_generate_returns_uint8_frames_reproducible_by_seed(tiny_checkpoint):
    pipe = VideoPipeline.from_pretrained(tiny_checkpoint)
    a, b, c = generate(pipe), generate(pipe), generate(pipe, seed=1)
    assert a.pixels.shape == (1, 3, 16, 16, 3) and a.pixels.dtype == np.uint8
    assert np.array_equal(a.pixels, b.pixels) and not np.array_equal(a.pixels, c.pixels)
    assert generate(pipe, height=32, width=24).pixels.shape == (1, 3, 32, 24, 3)
    assert generate(pipe, sampler="ddpm").pixels.shape == (1, 3, 16, 16, 3)


def test_save_mp4_gif_and_png_sheet(tiny_checkpoint, tmp_path):
    video = generate(VideoPipeline.from_pretrained(tiny_checkpoint), num_frames=5)
    video.save(tmp_path / "v.mp4", scale=2)
    decoded = read_video(tmp_path / "v.mp4")
    assert decoded.shape == (5, 32, 32, 3)
    video.save(tmp_path / "v.gif")
    assert Image.open(tmp_path / "v.gif").n_frames == 5
    video.save(tmp_path / "v.png", scale=1)
    assert Image.open(tmp_path / "v.png").size == (5 * 16 + 4, 16)
    assert Image.open(tmp_path / "v.gif").size == (64, 64)          # the API enlarges 4x by default, as the CLI does


def test_existing_output_is_not_overwritten_and_bad_paths_fail_cleanly(tiny_checkpoint, tmp_path):
    video = generate(VideoPipeline.from_pretrained(tiny_checkpoint))
    (tmp_path / "v.mp4").write_bytes(b"precious")
    with pytest.raises(VidiffError, match="already exists"):
        video.save(tmp_path / "v.mp4")
    assert (tmp_path / "v.mp4").read_bytes() == b"precious"
    with pytest.raises(VidiffError, match="does not exist"):
        video.save(tmp_path / "missing" / "v.mp4")
    with pytest.raises(VidiffError, match="suffixes"):
        video.save(tmp_path / "v.avi")
    video.save(tmp_path / "v.mp4", overwrite=True)
    assert read_video(tmp_path / "v.mp4").shape[0] == 3


@pytest.mark.parametrize("kwargs,message", [
    ({"prompt": "  "}, "prompt is empty"),
    ({"prompt": "a red dog bouncing"}, "unknown word 'dog'"),
    ({"height": 17}, "--size a multiple of 2"),
    ({"num_frames": 0}, r"frames\) must be a whole number >= 1"),
    ({"steps": 0}, "whole number from 1"),
    ({"sampler": "lms"}, "unknown sampler"),
    # the Python API's inputs of a new user's pass (issue 34): our message, never an internal exception
    ({"num_frames": "16"}, "num_frames .* must be a whole number"),
    ({"steps": 2.5}, "steps .* must be a whole number"),
    ({"prompt": None}, "string or a list of strings"),
    ({"prompt": 123}, "string or a list of strings"),
    ({"prompt": b"a red circle"}, "string or a list of strings"),
    ({"prompt": ["a red circle bouncing", 5]}, "string or a list of strings"),
    ({"generator": 0}, "must be a torch.Generator"),
    ({"callback": 5}, "callback must be a function"),
    ({"guidance": 1e30}, "guidance scale .* from 0 to 50"),
    ({"eta": 2.0}, "eta"),
    ({"conditioning": FrameConditioning(weight=float("nan")), "image": np.zeros((8, 8, 3), np.uint8)},
     "reconstruction guidance weight"),
    ({"conditioning": FrameConditioning(method="magic")}, "unknown conditioning method"),
    ({"zero_shot": ZeroShot((float("nan"), 0.0))}, "motion"),
    ({"sampling": {"steps": 2}}, "sampling must be a vidiff.pipeline.SampleOptions"),
])
def test_bad_generation_input_is_a_one_line_error(tiny_checkpoint, kwargs, message):
    pipe = VideoPipeline.from_pretrained(tiny_checkpoint)
    prompt = kwargs.pop("prompt", "a red circle bouncing")
    with pytest.raises(VidiffError, match=message) as e:
        generate(pipe, prompt=prompt, num_frames=kwargs.pop("num_frames", 2), **{"steps": 1, **kwargs})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kwargs,message", [
    ({"index": 5}, "index must be a whole number from 0 to 0"),
    ({"scale": 0}, "scale .* from 1 to"),
    ({"scale": 1000}, "scale .* from 1 to"),
    ({"fps": 0}, "fps .* from 1 to 240"),
])
def test_bad_save_options_are_one_line_errors(tmp_path, kwargs, message):
    video = VideoPipelineOutput(np.zeros((1, 3, 16, 16, 3), np.uint8), ["a red circle bouncing"])
    with pytest.raises(VidiffError, match=message):
        video.save(tmp_path / "v.mp4", **kwargs)
    assert not (tmp_path / "v.mp4").exists()


@pytest.mark.parametrize("device,message", [("banana", "unknown device"), (123, "unknown device"),
                                            ("cuda:7", "not available|does not exist")])
def test_a_device_this_machine_lacks_is_a_one_line_error(tiny_checkpoint, device, message):
    with pytest.raises(VidiffError, match=message):
        VideoPipeline.from_pretrained(tiny_checkpoint, device=device)


def test_lora_scales_that_blacken_the_video_are_refused(tiny_checkpoint):
    pipe = VideoPipeline.from_pretrained(tiny_checkpoint)
    for scale in (-5.0, 1e6, float("nan")):
        with pytest.raises(VidiffError, match="--lora-scale must be a finite number from -2 to 4"):
            pipe.load_lora("anything.safetensors", scale)


def test_checkpoint_from_another_architecture_is_rejected(tiny_checkpoint, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes((tiny_checkpoint / "model.safetensors").read_bytes())
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    config["model"]["unet3d"]["base_channels"] = 32          # today's layout: the weights really do not fit
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(VidiffError, match="another architecture or size"):
        VideoPipeline.from_pretrained(other)
    (other / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(VidiffError, match="cannot read weights"):
        VideoPipeline.from_pretrained(other)
    with pytest.raises(VidiffError, match="not a vidiff checkpoint"):
        VideoPipeline.from_pretrained(tmp_path / "nowhere")


def test_a_config_mixing_flat_and_sectioned_keys_keeps_every_setting():
    """The flat (old) layout's keys merge into the backbone's section key by key; the same key set both
    ways with two values is a one-line error. (It used to replace the whole section.)"""
    from vidiff.checkpoint import upgrade_config_dict
    mixed = {"model": {"type": "unet3d", "groups": 8,
                       "unet3d": {"base_channels": 16, "channel_mults": [1, 2], "head_dim": 16}}}
    assert upgrade_config_dict(mixed)["model"]["unet3d"] == {"base_channels": 16, "channel_mults": [1, 2],
                                                              "head_dim": 16, "groups": 8}
    flat = {"model": {"base_channels": 16, "groups": 8}}
    assert upgrade_config_dict(flat)["model"]["unet3d"] == {"base_channels": 16, "groups": 8, "head_dim": 32}
    data = {"data": {"type": "shapes", "num_clips": 3, "shapes": {"max_objects": 1}}}
    assert upgrade_config_dict(data)["data"]["shapes"] == {"max_objects": 1, "num_clips": 3}
    with pytest.raises(VidiffError, match="'model.base_channels' is given twice"):
        upgrade_config_dict({"model": {"base_channels": 32, "unet3d": {"base_channels": 16}}})


def test_export_writes_the_ema_weights_as_an_inference_model(tmp_path):
    from conftest import tiny_config_dict
    from vidiff.config import config_from_dict
    from vidiff.training import Trainer
    trainer = Trainer(config_from_dict(tiny_config_dict(steps=2)), tmp_path / "run", progress=False)
    trainer.train()
    out = export_pretrained(tmp_path / "run", tmp_path / "exported")
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors"}
    pipe = VideoPipeline.from_pretrained(out)
    for a, b in zip(pipe.model.state_dict().values(), trainer.ema.model.state_dict().values()):
        assert torch.equal(a, b)


def test_embedded_default_model_generates_the_prompted_colour():
    """The shipped model: a 'red' prompt must give red pixels and a 'blue' one blue pixels."""
    assert (DEFAULT_MODEL / "model.safetensors").stat().st_size < 25e6
    pipe = VideoPipeline.from_pretrained()
    # its own sampling settings (config.json: 10 DPM-Solver++(2M) steps on the Karras grid, guidance 2)
    video = pipe(["a red square bouncing", "a blue circle bouncing"], sampling=SampleOptions(progress=False),
                 generator=torch.Generator().manual_seed(0)).pixels.astype(int)
    red = (video[..., 0] > 150) & (video[..., 1] < 100) & (video[..., 2] < 100)
    blue = (video[..., 2] > 150) & (video[..., 0] < 120) & (video[..., 1] < 150)
    assert red[0].mean() > 0.02 and blue[1].mean() > 0.02        # objects of the prompted colour exist
    assert red[1].mean() < 0.005 and blue[0].mean() < 0.005      # and not the other colour


def test_the_models_own_sampling_settings_are_the_defaults_and_explicit_ones_win(tiny_checkpoint, tmp_path):
    from vidiff.config import config_from_dict
    from vidiff.registry import validate
    from conftest import tiny_config_dict
    pipe = VideoPipeline.from_pretrained(tiny_checkpoint)
    assert pipe.defaults() == SampleOptions(25, 3.0, "ddim", "uniform")
    raw = tiny_config_dict()
    raw["diffusion"] = {**raw.get("diffusion", {}), "guidance": 2.0, "sampler": "dpm++2m", "sampling_steps": 3,
                        "spacing": "karras"}
    tuned = VideoPipeline.from_pretrained(write_checkpoint(tmp_path / "g2", config_from_dict(raw), pipe.model))
    assert tuned.defaults() == SampleOptions(3, 2.0, "dpm++2m", "karras")
    assert tuned.options(SampleOptions(5, 4.5, "ddim", "uniform")) == SampleOptions(5, 4.5, "ddim", "uniform")
    # the defaults are what sampling uses: same seed, nothing specified == every setting explicit
    calls = []
    default = tuned("a red circle bouncing", num_frames=3, generator=torch.Generator().manual_seed(0),
                    sampling=SampleOptions(progress=False, callback=lambda i, x0: calls.append(i)))
    explicit = generate(tuned, steps=3, guidance=2.0, sampler="dpm++2m", spacing="karras")
    assert calls == [0, 1, 2] and np.array_equal(default.pixels, explicit.pixels)
    for other in (dict(guidance=3.0), dict(sampler="ddim"), dict(spacing="uniform")):
        changed = generate(tuned, steps=3, **{"guidance": 2.0, "sampler": "dpm++2m", "spacing": "karras", **other})
        assert not np.array_equal(default.pixels, changed.pixels), other
    raw["diffusion"]["guidance"] = -1.0
    with pytest.raises(VidiffError, match="guidance"):
        config_from_dict(raw)
    for key, bad in (("sampler", "plms"), ("spacing", "cubic")):
        wrong = tiny_config_dict()
        wrong["diffusion"] = {**wrong.get("diffusion", {}), key: bad}
        with pytest.raises(VidiffError, match=f"diffusion.{key}"):
            validate(config_from_dict(wrong))


def test_interpolation_without_a_prompt_keeps_the_shapes_the_frames_show():
    """With no prompt the frames decide what is drawn: the shapes world's model is told what its objects
    are. (Guided by the empty prompt, the embedded model drew a triangle between circles.)"""
    from vidiff.data import build_dataset
    from vidiff.data.objects import track
    from vidiff.world import parse_caption
    pipe = VideoPipeline.from_pretrained()
    dataset = build_dataset(pipe.config.data, pipe.config.model.text.vocab)
    for i in (0, 2):
        clip = dataset[i]
        frames = ((clip["video"].permute(1, 2, 3, 0).numpy() + 1) * 127.5).round().astype(np.uint8)[::4]
        result = pipe.interpolate(frames, factor=4, generator=torch.Generator().manual_seed(0),
                                  sampling=SampleOptions(progress=False))
        assert sorted(parse_caption(result.prompts[0])) == sorted(parse_caption(clip["caption"]))
        new = np.delete(result.pixels[0], np.arange(0, 13, 4), axis=0)           # the frames it made
        tracks, _ = track(new)
        for colour, shape in parse_caption(clip["caption"]):
            assert tracks[colour].majority_shape() == shape, (clip["caption"], colour)
