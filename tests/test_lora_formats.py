"""LoRA files as people download them (ComfyUI, musubi-tuner / kohya, distilled files with diff_b and
diff keys, peft's rslora and DoRA), against diffusers' own loader on a tiny random Wan: same file, same
video for a seed."""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")
from diffusers import WanPipeline  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from vidiff.errors import VidiffError  # noqa: E402
from vidiff.models.external.random_wan import save_random_wan  # noqa: E402
from vidiff.models.external.wan_names import original_names  # noqa: E402
from vidiff.pipeline import SampleOptions, VideoPipeline  # noqa: E402

PROMPT = "a red ball bounces over the table"
SIZE = dict(num_frames=5, height=32, width=32)
STEPS, GUIDANCE, TOLERANCE = 3, 5.0, 2
ATTENTION = [f"{a}.{p}" for a in ("self_attn", "cross_attn") for p in "qkvo"]
LAYERS = [*ATTENTION, "ffn.0", "ffn.2"]


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    return save_random_wan(tmp_path_factory.mktemp("wan") / "wan-tiny")


@pytest.fixture(scope="module")
def shapes(wan_dir):
    """original module name -> (out, in) of the tiny transformer's linear layers."""
    from diffusers import WanTransformer3DModel
    t = WanTransformer3DModel.from_pretrained(str(wan_dir / "transformer"))
    modules = dict(t.named_modules())
    return {o: tuple(modules[d].weight.shape) for d, o in original_names(len(t.blocks)).items()
            if d in modules and isinstance(modules[d], torch.nn.Linear)}


def pairs(shapes, layers, key, down="lora_down", up="lora_up", rank=2, alpha=1.0, seed=0, blocks=2):
    """A LoRA state dict with `key(name)` naming each layer: random A and B, an alpha when given."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i in range(blocks):
        for layer in layers:
            name = f"blocks.{i}.{layer}"
            o, n = shapes[name]
            out[f"{key(name)}.{down}.weight"] = torch.randn(rank, n, generator=g) * 0.3
            out[f"{key(name)}.{up}.weight"] = torch.randn(o, rank, generator=g) * 0.3
            if alpha is not None:
                out[f"{key(name)}.alpha"] = torch.tensor(alpha)
    return out


def comfy(name):
    return f"diffusion_model.{name}"


def musubi(name):
    return "lora_unet_" + name.replace(".", "_")


def reference(folder, loras=(), seed=0) -> np.ndarray:
    pipe = WanPipeline.from_pretrained(str(folder))
    for i, (path, _) in enumerate(loras):
        pipe.load_lora_weights(str(path), adapter_name=f"a{i}")
    if loras:
        pipe.set_adapters([f"a{i}" for i in range(len(loras))], [s for _, s in loras])
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(PROMPT, generator=torch.Generator().manual_seed(seed), output_type="np", num_inference_steps=STEPS,
                  guidance_scale=GUIDANCE, **SIZE).frames
    return (np.asarray(frames) * 255).round().astype(int)


def ours(folder, loras=(), seed=0) -> np.ndarray:
    pipe = VideoPipeline.from_pretrained(folder)
    for path, scale in loras:
        pipe.load_lora(path, scale)
    return pipe(PROMPT, generator=torch.Generator().manual_seed(seed), sampling=SampleOptions(STEPS, GUIDANCE, progress=False),
                output_type="uint8", **SIZE).pixels.astype(int)


def save(tensors, path, metadata=None):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def test_comfy_and_musubi_files_give_diffusers_video_alone_and_stacked(wan_dir, shapes, tmp_path):
    files = {
        "comfy_ab": save(pairs(shapes, LAYERS, comfy, "lora_A", "lora_B", alpha=None, seed=1), tmp_path / "ab.safetensors"),
        "comfy_alpha": save(pairs(shapes, LAYERS, comfy, alpha=1.0, seed=2), tmp_path / "downup.safetensors"),
        "musubi": save(pairs(shapes, LAYERS, musubi, alpha=4.0, seed=3), tmp_path / "musubi.safetensors"),
    }
    base = ours(wan_dir)
    for name, path in files.items():
        a, b = ours(wan_dir, [(path, 1.0)]), reference(wan_dir, [(path, 1.0)])
        assert np.abs(a - b).max() <= TOLERANCE, name
        assert np.abs(a - base).max() > 10, name                       # and the LoRA does something
    stack = [(files["comfy_alpha"], 0.7), (files["musubi"], 0.5)]    # two formats, each at its own scale
    assert np.abs(ours(wan_dir, stack) - reference(wan_dir, stack)).max() <= TOLERANCE


def test_a_musubi_file_for_the_attention_alone_loads(wan_dir, shapes, tmp_path):
    """diffusers' converter raises KeyError on it; the reference is the same weights in diffusers' names."""
    state = pairs(shapes, ["self_attn.q", "self_attn.v"], musubi, alpha=1.0, seed=4)
    path = save(state, tmp_path / "attn.safetensors")
    with pytest.raises(KeyError):
        WanPipeline.lora_state_dict(str(path))
    names = {o.replace(".", "_"): d for d, o in original_names(2).items()}
    converted = {}
    for key, value in state.items():
        module, rest = key[len("lora_unet_"):].split(".", 1)
        if rest == "lora_down.weight":
            converted[f"transformer.{names[module]}.lora_A.weight"] = value
        elif rest == "lora_up.weight":
            converted[f"transformer.{names[module]}.lora_B.weight"] = value * (1.0 / 2)   # alpha / r folded in
    diffusers_file = save(converted, tmp_path / "attn_diffusers.safetensors")
    assert np.abs(ours(wan_dir, [(path, 1.0)]) - reference(wan_dir, [(diffusers_file, 1.0)])).max() <= TOLERANCE


def distilled(shapes, seed=5):
    """What lightx2v's step-distilled LoRAs carry: pairs, diff_b on every adapted layer, a full `diff`
    for the head with its bias, a time_projection pair, and all-zero norm diffs."""
    g = torch.Generator().manual_seed(seed)
    state = pairs(shapes, LAYERS, comfy, "lora_A", "lora_B", rank=2, alpha=None, seed=seed)
    for i in range(2):
        for layer in LAYERS:
            state[f"diffusion_model.blocks.{i}.{layer}.diff_b"] = torch.randn(shapes[f"blocks.{i}.{layer}"][0], generator=g) * 0.05
        state[f"diffusion_model.blocks.{i}.norm3.diff"] = torch.zeros(shapes["blocks.0.self_attn.q"][1])
        state[f"diffusion_model.blocks.{i}.norm3.diff_b"] = torch.zeros(shapes["blocks.0.self_attn.q"][1])
    o, n = shapes["head.head"]
    state["diffusion_model.head.head.diff"] = torch.randn(o, n, generator=g) * 0.05
    state["diffusion_model.head.head.diff_b"] = torch.randn(o, generator=g) * 0.05
    o, n = shapes["time_projection.1"]
    state["diffusion_model.time_projection.1.lora_A.weight"] = torch.randn(2, n, generator=g) * 0.1
    state["diffusion_model.time_projection.1.lora_B.weight"] = torch.randn(o, 2, generator=g) * 0.1
    state["diffusion_model.time_projection.1.diff_b"] = torch.randn(o, generator=g) * 0.02
    return state


def test_a_distilled_lora_with_diff_b_and_head_keys_gives_diffusers_video(wan_dir, shapes, tmp_path):
    path = save(distilled(shapes), tmp_path / "distilled.safetensors")
    a, b = ours(wan_dir, [(path, 1.0)]), reference(wan_dir, [(path, 1.0)])
    assert np.abs(a - b).max() <= TOLERANCE
    assert np.abs(a - ours(wan_dir)).max() > 10


def test_merging_a_distilled_lora_keeps_its_video(wan_dir, shapes, tmp_path):
    path = save(distilled(shapes), tmp_path / "distilled.safetensors")
    pipe = VideoPipeline.from_pretrained(wan_dir)
    pipe.load_lora(path, 0.8)
    run = dict(generator=torch.Generator().manual_seed(0), sampling=SampleOptions(STEPS, GUIDANCE, progress=False),
               output_type="uint8", **SIZE)
    before = pipe(PROMPT, **run).pixels.astype(int)
    pipe.merge_lora()
    run["generator"] = torch.Generator().manual_seed(0)
    assert np.abs(pipe(PROMPT, **run).pixels.astype(int) - before).max() <= TOLERANCE


def peft_file(wan_dir, tmp_path, **config):
    from diffusers import WanTransformer3DModel
    from peft import LoraConfig, get_peft_model_state_dict
    transformer = WanTransformer3DModel.from_pretrained(str(wan_dir / "transformer"))
    transformer.add_adapter(LoraConfig(init_lora_weights=False, **config))
    folder = tmp_path / "peft"
    folder.mkdir(parents=True)
    state = {k.replace(".default", ""): v for k, v in transformer.state_dict().items() if "lora_" in k}
    save(state if config.get("use_dora") else get_peft_model_state_dict(transformer),
         folder / "adapter_model.safetensors")
    transformer.peft_config["default"].save_pretrained(str(folder))
    return folder, transformer


def test_rslora_is_applied_at_peft_scale_and_dora_is_refused(wan_dir, tmp_path):
    from vidiff.models.lora import load_lora
    folder, theirs = peft_file(wan_dir, tmp_path, r=4, lora_alpha=8, use_rslora=True,
                               target_modules=["to_q", "to_v"], rank_pattern={"blocks.1.attn1.to_q": 2})
    mine = VideoPipeline.from_pretrained(wan_dir)
    load_lora(mine.bundle.lora_target, folder, names=mine.bundle.lora_names)
    x, t, ctx = torch.randn(1, 4, 2, 4, 4), torch.tensor([500.0]), torch.randn(1, 7, 16)
    with torch.no_grad():
        a = mine.bundle.lora_target(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]
        b = theirs(hidden_states=x, timestep=t, encoder_hidden_states=ctx, return_dict=False)[0]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)     # 8 / sqrt(4) = 4.0, per-layer rank 2 included
    dora, _ = peft_file(wan_dir, tmp_path / "d", r=2, lora_alpha=2, use_dora=True, target_modules=["to_q"])
    with pytest.raises(VidiffError, match="DoRA"):
        mine.load_lora(dora)


def test_keys_vidiff_cannot_place_are_refused_in_one_line(wan_dir, shapes, tmp_path):
    pipe = VideoPipeline.from_pretrained(wan_dir)
    good = pairs(shapes, ["self_attn.q"], comfy, alpha=1.0)
    cases = {
        "text encoder": {**good, "text_encoder.encoder.block.0.layer.0.SelfAttention.q.lora_A.weight": torch.ones(2, 16)},
        "cannot place": {**good, "diffusion_model.blocks.0.self_attn.q.something": torch.ones(2)},
        "another base model": {**good, "diffusion_model.blocks.7.self_attn.q.lora_down.weight": torch.ones(2, 16),
                               "diffusion_model.blocks.7.self_attn.q.lora_up.weight": torch.ones(16, 2)},
        "half a LoRA pair": {"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.ones(2, 16)},
    }
    for message, state in cases.items():
        with pytest.raises(VidiffError, match=message):
            pipe.load_lora(save(state, tmp_path / "bad.safetensors"))
    nonzero = {**good, "diffusion_model.blocks.0.modulation.diff": torch.ones(1, 6, 16)}
    with pytest.raises(VidiffError, match="modulation"):
        pipe.load_lora(save(nonzero, tmp_path / "bad.safetensors"))


def test_converted_files_load_the_same_adapter_in_every_format(wan_dir, shapes, tmp_path):
    """vidiff lora convert: musubi -> comfy -> diffusers -> peft, each the same weights as loaded."""
    from typer.testing import CliRunner

    from vidiff.cli import app
    src = save(pairs(shapes, LAYERS, musubi, alpha=1.0, seed=6), tmp_path / "musubi.safetensors")
    runner = CliRunner()
    outputs = {}
    for fmt, source in (("comfy", src), ("diffusers", "comfy"), ("peft", "diffusers")):
        out = tmp_path / (f"{fmt}.safetensors" if fmt != "peft" else "peft")
        given = src if source == src else outputs[source]
        r = runner.invoke(app, ["lora", "convert", str(given), str(out), "--to", fmt, "--model", str(wan_dir)])
        assert r.exit_code == 0, r.output
        outputs[fmt] = out
    assert any(k.startswith("diffusion_model.") and k.endswith(".lora_down.weight") for k in load_file(outputs["comfy"]))
    assert json.loads((outputs["peft"] / "adapter_config.json").read_text())["r"] == 2
    pipe = VideoPipeline.from_pretrained(wan_dir)
    x, t, ctx = torch.randn(1, 4, 2, 4, 4), torch.tensor([500.0]), torch.randn(1, 7, 16)
    results = []
    for path in (src, *outputs.values()):
        name = pipe.load_lora(path)
        with torch.no_grad():
            results.append(pipe.bundle.lora_target(hidden_states=x, timestep=t, encoder_hidden_states=ctx,
                                                   return_dict=False)[0])
        assert pipe.unload_lora(name) > 0
    for r in results[1:]:
        torch.testing.assert_close(r, results[0], atol=1e-5, rtol=1e-4)
    r = runner.invoke(app, ["lora", "convert", str(src), str(outputs["comfy"]), "--to", "comfy", "--model", str(wan_dir)])
    assert "exists" in str(r.exception)                            # nothing saved is overwritten without asking


def test_few_step_recipe_is_four_euler_steps_at_the_published_timesteps(wan_dir, shapes, tmp_path):
    """--few-step with a distilled LoRA: the reference is the recipe written out by hand on diffusers'
    own modules (the LoRA loaded by diffusers): timesteps 1000/750/500/250 warped by shift 5, Euler, no CFG."""
    from diffusers import WanPipeline
    path = save(distilled(shapes), tmp_path / "distilled.safetensors")
    pipe = WanPipeline.from_pretrained(str(wan_dir))
    pipe.load_lora_weights(str(path))
    context = pipe.encode_prompt(PROMPT, do_classifier_free_guidance=False)[0]
    t = torch.tensor([1000.0, 750.0, 500.0, 250.0]) / 1000
    sigmas = [*(5 * t / (1 + 4 * t)).tolist(), 0.0]
    z = torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            v = pipe.transformer(hidden_states=z, timestep=torch.tensor([s * 1000]), encoder_hidden_states=context,
                                 return_dict=False)[0]
            z = z + (s_next - s) * v
        mean = torch.tensor(pipe.vae.config.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(pipe.vae.config.latents_std).view(1, -1, 1, 1, 1)
        video = pipe.vae.decode(z * std + mean, return_dict=False)[0]
    theirs = ((video.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 4, 1).int().numpy()
    mine = VideoPipeline.from_pretrained(wan_dir)
    mine.load_lora(path)
    ours_ = mine(PROMPT, generator=torch.Generator().manual_seed(0), sampling=SampleOptions.few_step(progress=False),
                 output_type="uint8", **SIZE).pixels.astype(int)
    assert np.abs(ours_ - theirs).max() <= TOLERANCE
