"""Wan 2.2 layouts (A14B's two experts, TI2V-5B's per-token timesteps) against diffusers' WanPipeline and
WanImageToVideoPipeline on tiny random directories: same seed, same video."""
import json
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import WanImageToVideoPipeline, WanPipeline  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from vidiff.errors import VidiffError  # noqa: E402
from vidiff.models.external.random_wan import save_random_wan  # noqa: E402
from vidiff.pipeline import SampleOptions, VideoPipeline  # noqa: E402

PROMPT = "a red ball bounces over the table"
SIZE = dict(num_frames=9, height=32, width=64, num_inference_steps=6)
TOLERANCE = 2


@pytest.fixture(scope="module")
def a14b(tmp_path_factory):
    return save_random_wan(tmp_path_factory.mktemp("wan") / "a14b", layout="a14b")


@pytest.fixture(scope="module")
def ti2v(tmp_path_factory):
    return save_random_wan(tmp_path_factory.mktemp("wan") / "ti2v", layout="ti2v")


def pixels(frames) -> np.ndarray:
    return (np.asarray(frames) * 255).round().astype(int)


def reference(folder, cls=WanPipeline, loras=(), **call) -> np.ndarray:
    pipe = cls.from_pretrained(str(folder))
    for i, (path, expert) in enumerate(loras):
        pipe.load_lora_weights(str(path), adapter_name=f"a{i}", load_into_transformer_2=expert == 2)
    pipe.set_progress_bar_config(disable=True)
    return pixels(pipe(prompt=PROMPT, generator=torch.Generator().manual_seed(0), output_type="np",
                       **{**SIZE, **call}).frames)


def ours(folder, loras=(), pipe=None, **call) -> np.ndarray:
    pipe = pipe or VideoPipeline.from_pretrained(folder)
    for path, expert in loras:
        pipe.load_lora(path, expert=expert)
    return pipe(PROMPT, generator=torch.Generator().manual_seed(0), sampling=SampleOptions(progress=False),
                output_type="uint8", **{**SIZE, **call}).pixels.astype(int)


def test_a14b_runs_each_expert_at_its_steps_with_its_guidance_as_diffusers_does(a14b):
    for call in (dict(guidance_scale=5.0), dict(guidance_scale=5.0, guidance_scale_2=2.0)):
        assert np.abs(ours(a14b, **call) - reference(a14b, **call)).max() <= TOLERANCE, call
    one = VideoPipeline.from_pretrained(a14b)
    one.bundle.backbone.transformer_2 = one.bundle.backbone.transformer    # the high-noise expert all the way
    assert np.abs(ours(a14b, pipe=one, guidance_scale=5.0) - reference(a14b, guidance_scale=5.0)).max() > 20
    d = VideoPipeline.from_pretrained(a14b).defaults()
    assert (d.guidance, d.guidance_2, d.steps) == (4.0, 3.0, 40)     # the release's own settings


def test_a14b_offload_keeps_one_expert_on_the_device_at_a_time(a14b):
    pipe = VideoPipeline.from_pretrained(a14b, offload="model")
    video = ours(a14b, pipe=pipe, guidance_scale=5.0)
    moves, on = pipe.bundle.backbone.moves, set()
    for expert, where in moves:
        (on.add if where == "device" else on.discard)(expert)
        assert len(on) <= 1
    assert [m for m in moves if m[1] == "device"] == [("transformer", "device"), ("transformer_2", "device")]
    assert np.abs(video - ours(a14b, guidance_scale=5.0)).max() == 0


def comfy_lora(path, seed, blocks=2, dim=16):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i in range(blocks):
        for layer in ("self_attn.q", "self_attn.v", "ffn.2"):
            n, o = (32, dim) if layer == "ffn.2" else (dim, dim)
            state[f"diffusion_model.blocks.{i}.{layer}.lora_down.weight"] = torch.randn(2, n, generator=g) * 0.4
            state[f"diffusion_model.blocks.{i}.{layer}.lora_up.weight"] = torch.randn(o, 2, generator=g) * 0.4
            state[f"diffusion_model.blocks.{i}.{layer}.alpha"] = torch.tensor(1.0)
    save_file(state, str(path))
    return path


def test_a14b_takes_a_lora_for_each_expert_as_diffusers_does(a14b, tmp_path):
    loras = [(comfy_lora(tmp_path / "high.safetensors", 1), 1), (comfy_lora(tmp_path / "low.safetensors", 2), 2)]
    a, b = ours(a14b, loras, guidance_scale=5.0), reference(a14b, loras=loras, guidance_scale=5.0)
    assert np.abs(a - b).max() <= TOLERANCE
    assert np.abs(a - ours(a14b, loras[:1], guidance_scale=5.0)).max() > 2 * TOLERANCE   # the second one matters


def test_ti2v_text_to_video_and_image_to_video_match_diffusers(ti2v, monkeypatch):
    from diffusers.pipelines.wan import pipeline_wan, pipeline_wan_i2v
    monkeypatch.setattr(pipeline_wan_i2v, "prompt_clean", pipeline_wan.prompt_clean)   # its own needs ftfy
    assert np.abs(ours(ti2v, guidance_scale=5.0) - reference(ti2v, guidance_scale=5.0)).max() <= TOLERANCE
    image = Image.fromarray((np.random.default_rng(0).random((32, 64, 3)) * 255).astype(np.uint8))
    a = ours(ti2v, image=image, guidance_scale=5.0)
    b = reference(ti2v, WanImageToVideoPipeline, image=image, guidance_scale=5.0)
    assert np.abs(a[:, 1:] - b[:, 1:]).max() <= TOLERANCE
    assert np.abs(a[:, 0] - np.asarray(image)).max() == 0          # frame 0: the image itself, not the VAE's copy
    assert np.abs(a[:, 1:] - ours(ti2v, guidance_scale=5.0)[:, 1:]).max() > 20


def test_cli_generates_with_wan22_options(a14b, ti2v, tmp_path):
    from typer.testing import CliRunner

    from vidiff.cli import app
    lora = comfy_lora(tmp_path / "low.safetensors", 3)
    Image.fromarray(np.full((32, 64, 3), 128, np.uint8)).save(tmp_path / "first.png")
    runner = CliRunner()
    for args in (["--model", str(a14b), "--guidance", "4", "--guidance-2", "2", "--lora-2", str(lora), "--offload", "model"],
                 ["--model", str(ti2v), "--image", str(tmp_path / "first.png")]):
        out = tmp_path / f"{len(args)}.png"
        r = runner.invoke(app, ["generate", PROMPT, *args, "--frames", "5", "--size", "32x64", "--steps", "2",
                                "--out", str(out)])
        assert r.exit_code == 0 and out.is_file(), (r.output, r.exception)


def edited(folder, tmp_path, **changes):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    index = json.loads((copy / "model_index.json").read_text())
    (copy / "model_index.json").write_text(json.dumps({**index, **changes}))
    return copy


@pytest.mark.parametrize("changes, message", [
    (dict(boundary_ratio=None), "transformer_2 but no boundary_ratio"),
    (dict(_class_name="WanImageToVideoPipeline", image_encoder=["transformers", "CLIPVisionModel"]),
     "image as extra input channels and CLIP image states"),
    (dict(_class_name="WanImageToVideoPipeline"), "image as extra input channels, which"),
])
def test_wan_directories_vidiff_cannot_run_are_refused_in_one_line(a14b, tmp_path, changes, message):
    with pytest.raises(VidiffError, match=message):
        VideoPipeline.from_pretrained(edited(a14b, tmp_path, **changes))


def test_two_expert_options_on_a_one_expert_model_are_refused(ti2v, tmp_path):
    pipe = VideoPipeline.from_pretrained(ti2v)
    with pytest.raises(VidiffError, match="guidance-2"):
        pipe(PROMPT, guidance_scale_2=3.0, **SIZE)
    with pytest.raises(VidiffError, match="lora-2"):
        pipe.load_lora(comfy_lora(tmp_path / "x.safetensors", 0), expert=2)


def test_fsdp_shards_every_block_of_each_expert(a14b):
    from vidiff.models.external import load_open_backbone
    from vidiff.training.parallel import shard_units
    backbone = load_open_backbone(a14b)
    units = shard_units(backbone)
    assert len(units) == 4 and all(type(u).__name__ == "WanTransformerBlock" for u in units)
    assert {id(u) for u in units} == {id(b) for b in [*backbone.transformer.blocks, *backbone.transformer_2.blocks]}
