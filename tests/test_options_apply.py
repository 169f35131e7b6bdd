"""Every `vidiff generate` option either changes the video or is refused in one line that says when it
applies (vidiff/pipeline/applies.py), on each kind of model and each sampler: an option accepted and
then ignored is a bug the user cannot see."""
import numpy as np
import pytest
import typer.main
from PIL import Image
from typer.testing import CliRunner

from vidiff.cli import app
from vidiff.errors import VidiffError

pytest.importorskip("diffusers")
from vidiff.models.external.random_wan import save_random_wan  # noqa: E402

PROMPT = "a red circle bouncing"
# options about where and how the video is written, which model, and memory or speed: not the pixels
EXEMPT = {"--out": "the file", "--fps": "the file's frame rate", "--scale": "the file's enlargement",
          "--sheet": "a contact sheet beside the file", "--overwrite": "the file", "--model": "the model itself",
          "--offload": "placement: memory, not pixels", "--vae-tiling": "memory (tiles cover small frames whole)",
          "--compile": "speed (minutes to compile on a CPU)", "--lora-2-scale": "walked with --lora-2"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(name, base arguments, a LoRA file for it) per kind of model: vidiff's embedded U-Net and a Wan."""
    import torch
    from safetensors.torch import save_file

    from vidiff.checkpoint import load_model
    from vidiff.models.lora import add_lora, save_lora
    tmp = tmp_path_factory.mktemp("options")
    model = load_model("default")[0]
    add_lora(model, "x", 2, 2.0, ["backbone.*.to_q"])
    for m in model.modules():
        if hasattr(m, "lora"):
            torch.nn.init.normal_(m.lora["x"].up.weight, std=0.5)
    own = save_lora(model, "x", tmp / "own.safetensors", ["backbone.*.to_q"])
    wan = save_random_wan(tmp / "wan")
    g = torch.Generator().manual_seed(0)
    save_file({f"diffusion_model.blocks.{i}.self_attn.q.{k}": torch.randn(*s, generator=g) * 0.5
               for i in range(2) for k, s in (("lora_down.weight", (2, 16)), ("lora_up.weight", (16, 2)))},
              str(tmp / "wan_lora.safetensors"))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)).save(tmp / "first.png")
    return {"own": ([], own, tmp), "wan": (["--model", str(wan)], tmp / "wan_lora.safetensors", tmp)}


def run(kind, models, extra, name):
    base, _, tmp = models[kind]
    out = tmp / f"{kind}-{name}.png"
    frames = "5" if kind == "wan" else "8"
    args = ["generate", PROMPT, *base, "--frames", frames, "--size", "32", "--steps", "3", "--scale", "1",
            "--out", str(out), "--overwrite", *extra]
    r = CliRunner().invoke(app, args)
    if r.exit_code == 0:
        return np.asarray(Image.open(out)).astype(int)
    assert isinstance(r.exception, VidiffError), (args, r.output, r.exception)
    assert "\n" not in str(r.exception).strip()
    return str(r.exception)


def values(kind, models):
    """A non-default value of each option, and the arguments it is compared against."""
    _, lora, tmp = models[kind]
    return {"--frames": (["--frames", "9"], []), "--size": (["--size", "32x64"], []),
            "--negative-prompt": (["--negative-prompt", "dark room"], []),
            "--window-overlap": (["--window-overlap", "1"], []), "--image": (["--image", str(tmp / "first.png")], []),
            "--zero-shot": (["--zero-shot"], []), "--motion": (["--motion", "3,0"], []), "--stride": (["--stride", "2"], []),
            "--lora": (["--lora", str(lora)], []), "--lora-scale": (["--lora", str(lora), "--lora-scale", "0.3"],
                                                                    ["--lora", str(lora)]),
            "--lora-2": (["--lora-2", str(lora)], []), "--dtype": (["--dtype", "bf16"], []),
            "--steps": (["--steps", "4"], []), "--guidance": (["--guidance", "4"], []),
            "--guidance-2": (["--guidance-2", "2"], []), "--sampler": (["--sampler", "ddim"], []),
            "--spacing": (["--spacing", "log_snr"], []), "--eta": (["--eta", "0.5"], []), "--shift": (["--shift", "2"], []),
            "--few-step": (["--few-step"], []), "--seed": (["--seed", "1"], []),
            "--method": (["--method", "replacement"], []), "--guidance-weight": (["--guidance-weight", "50"], []),
            "--history-guidance": (["--history-guidance", "3"], [])}


def changes_or_refused(kind, models, name, with_option, without):
    a, b = run(kind, models, with_option, name), run(kind, models, without, name + "-base")
    if isinstance(a, str):
        return "refused"
    assert not isinstance(b, str), (name, b)
    assert a.shape != b.shape or np.abs(a - b).max() > 0, f"{name} on {kind} was accepted and changed nothing"
    return "changes"


@pytest.mark.parametrize("kind", ["own", "wan"])
def test_every_generate_option_changes_the_video_or_is_refused(kind, models):
    options = [o for p in typer.main.get_command(app).commands["generate"].params for o in p.opts if o.startswith("--")]
    table = values(kind, models)
    missing = [o for o in options if o not in table and o not in EXEMPT]
    assert not missing, f"new options without a value here (or a reason in EXEMPT): {missing}"
    outcome = {name: changes_or_refused(kind, models, name, *table[name]) for name in table}
    assert outcome["--motion"] == outcome["--guidance-weight"] == outcome["--window-overlap"] == "refused"
    assert outcome["--seed"] == outcome["--steps"] == "changes"


@pytest.mark.parametrize("kind, samplers", [("own", ["ddim", "ddpm", "dpm++2m", "euler", "heun", "flow-euler"]),
                                            ("wan", ["scheduler", "flow-euler", "ddim"])])
def test_sampler_options_change_the_video_or_are_refused_with_every_sampler(kind, models, samplers):
    for sampler in samplers:
        base = ["--sampler", sampler] + (["--spacing", "uniform"] if sampler != "scheduler" else [])
        for option in (["--eta", "0.5"], ["--shift", "2"], ["--spacing", "karras"]):
            with_option = base[:2] + option + ([] if option[0] == "--spacing" else base[2:])
            changes_or_refused(kind, models, f"{sampler}{option[0]}", with_option, base)
