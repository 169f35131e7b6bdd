"""Diffusers-format open models (Wan 2.1) through vidiff, against diffusers' own WanPipeline on tiny
random-weight models that the tests build and save: same seed, same video."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline  # noqa: E402

from vidiff.errors import VidiffError  # noqa: E402
from vidiff.models.external.random_wan import save_random_wan  # noqa: E402
from vidiff.pipeline import SampleOptions, VideoPipeline  # noqa: E402

PROMPT = "a red ball bounces over the table"
SIZE = dict(num_frames=9, height=32, width=48, num_inference_steps=4, guidance_scale=5.0)   # WanPipeline's names
OURS = dict(num_frames=9, height=32, width=48)
STEPS, GUIDANCE = 4, 5.0
TOLERANCE = 2          # in 8-bit levels


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    return save_random_wan(tmp_path_factory.mktemp("wan") / "wan-tiny")


def reference(folder, prompt=PROMPT, negative="", seed=0, lora=None, scheduler=None, **size) -> np.ndarray:
    pipe = WanPipeline.from_pretrained(str(folder))
    if scheduler is not None:
        pipe.scheduler = scheduler
    if lora is not None:
        pipe.load_lora_weights(str(lora))
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(prompt, negative_prompt=negative, generator=torch.Generator().manual_seed(seed), output_type="np",
                  **{**SIZE, **size}).frames
    return (np.asarray(frames) * 255).round().astype(int)


def ours(folder, prompt=PROMPT, negative="", seed=0, lora=None, **options) -> np.ndarray:
    pipe = VideoPipeline.from_pretrained(folder)
    if lora is not None:
        pipe.load_lora(lora)
    sampling = SampleOptions(STEPS, GUIDANCE, progress=False, **options)
    return pipe(prompt, negative_prompt=negative, generator=torch.Generator().manual_seed(seed), sampling=sampling,
                output_type="uint8", **OURS).pixels.astype(int)


def test_the_directorys_scheduler_gives_diffusers_video_for_a_seed(wan_dir):
    for negative in ("", "dark room"):
        a, b = ours(wan_dir, negative=negative), reference(wan_dir, negative=negative)
        assert a.shape == b.shape == (1, 9, 32, 48, 3)
        assert np.abs(a - b).max() <= TOLERANCE
    assert np.abs(ours(wan_dir, seed=1) - ours(wan_dir)).max() > 20      # and the seed matters


def test_vidiffs_flow_euler_on_the_directorys_grid_equals_diffusers_flow_match_euler(wan_dir, tmp_path):
    pipe = WanPipeline.from_pretrained(str(wan_dir))
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    pipe.save_pretrained(str(tmp_path / "euler"))
    b = reference(tmp_path / "euler")
    assert np.abs(ours(tmp_path / "euler", sampler="flow-euler") - b).max() <= TOLERANCE
    for sampler, spacing in (("dpm++2m", "model"), ("flow-euler", "uniform"), ("heun", "karras")):
        video = ours(wan_dir, sampler=sampler, spacing=spacing)     # the same model, other solvers: close, not equal
        assert video.shape == b.shape and np.abs(video - b).mean() < 20


def test_cli_generate_with_a_diffusers_directory_and_a_non_square_size(wan_dir, tmp_path):
    from typer.testing import CliRunner

    from vidiff.cli import app
    r = subprocess.run([sys.executable, "-m", "vidiff", "generate", PROMPT, "--model", str(wan_dir), "--size", "32x48",
                        "--frames", "9", "--steps", "2", "--out", str(tmp_path / "w.mp4"), "--scale", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and (tmp_path / "w.mp4").is_file(), r.stderr[-2000:]
    for args, message in ((["--size", "30x48"], "multiple of 16"), (["--frames", "8"], "1 + 4k frames"),
                          (["--method", "trained"], "not trained with frame masks"),
                          (["--sampler", "bogus"], "unknown sampler"), (["--offload", "gpu"], "unknown --offload")):
        result = CliRunner().invoke(app, ["generate", PROMPT, "--model", str(wan_dir), "--frames", "9", "--size", "32x48",
                                          *args, "--out", str(tmp_path / "x.mp4")])   # main() prints these in one line
        assert isinstance(result.exception, VidiffError) and message in str(result.exception), (args, result.output)


def broken_copy(wan_dir, tmp_path, edit) -> str:
    folder = tmp_path / "broken"
    shutil.copytree(wan_dir, folder)
    edit(folder)
    return folder


@pytest.mark.parametrize("edit, message", [
    (lambda f: (f / "model_index.json").write_text(json.dumps({**json.loads((f / "model_index.json").read_text()),
                                                               "_class_name": "CogVideoXPipeline"})),
     "holds a CogVideoXPipeline pipeline; vidiff runs these diffusers pipelines: WanPipeline"),
    (lambda f: shutil.rmtree(f / "vae"), "has no 'vae' component"),
    (lambda f: (f / "model_index.json").write_text(json.dumps({**json.loads((f / "model_index.json").read_text()),
                                                               "transformer_2": ["diffusers", "WanTransformer3DModel"],
                                                               "boundary_ratio": 0.875})),
     "has no 'transformer_2' component"),
    (lambda f: (f / "model_index.json").write_text(json.dumps({**json.loads((f / "model_index.json").read_text()),
                                                               "image_encoder": ["transformers", "CLIPVisionModel"]})),
     "has a 'image_encoder' component"),
    (lambda f: (f / "model_index.json").write_text(json.dumps({**json.loads((f / "model_index.json").read_text()),
                                                               "audio_ratio": 0.5})),
     "sets audio_ratio: 0.5"),
    (lambda f: (f / "transformer" / "diffusion_pytorch_model.safetensors").unlink(), "has no weights file"),
])
def test_a_directory_vidiff_cannot_run_is_a_one_line_error(wan_dir, tmp_path, edit, message):
    with pytest.raises(VidiffError, match=message.replace("(", r"\(")):
        VideoPipeline.from_pretrained(broken_copy(wan_dir, tmp_path, edit))


def test_without_the_extra_a_diffusers_directory_names_it(wan_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)       # import diffusers -> ImportError
    with pytest.raises(VidiffError, match=r'pip install -e "\.\[diffusers\]"'):
        VideoPipeline.from_pretrained(wan_dir)


def test_a_prompt_over_the_text_encoders_length_is_truncated_with_one_line_of_ours(wan_dir, capfd):
    pipe = VideoPipeline.from_pretrained(wan_dir)
    pipe(" ".join(["red ball"] * 300), sampling=SampleOptions(1, progress=False), **OURS)
    err = capfd.readouterr().err
    assert "note: the prompt has 601 tokens; the text encoder reads the first 512\n" in err and "Warning" not in err


@pytest.fixture(scope="module")
def lora_run(wan_dir, tmp_path_factory):
    """A LoRA fine-tune of the tiny Wan on a folder of two captioned clips; the Trainer, and the flow
    loss on fixed draws before and after training."""
    from contextlib import nullcontext

    from vidiff.config import config_from_dict
    from vidiff.data.io import save_video
    from vidiff.training import Trainer
    tmp = tmp_path_factory.mktemp("lora")
    (tmp / "clips").mkdir()
    for i, caption in enumerate(["a red ball bounces", "a blue ball bounces"]):
        frames = np.zeros((9, 32, 32, 3), np.uint8)
        for t in range(9):
            frames[t, 10:20, 2 + 2 * t:12 + 2 * t, i * 2] = 255
        save_video(frames, tmp / "clips" / f"c{i}.mp4", fps=8)
        (tmp / "clips" / f"c{i}.txt").write_text(caption)
    values = {"model": {"pretrained": str(wan_dir)},
              "data": {"type": "folder", "frames": 9, "size": 32,
                       "folder": {"path": str(tmp / "clips"), "cache": str(tmp / "cache")}},
              "train": {"steps": 40, "batch_size": 2, "lr": 1e-2, "warmup_steps": 1, "log_every": 10,
                        "checkpoint_every": 40, "sample_every": 1000, "cfg_dropout": 0.0, "lora": {"rank": 4},
                        "sample_prompts": ["a red ball bounces", "a blue ball bounces"], "sample_steps": 3}}
    trainer = Trainer(config_from_dict(values), tmp / "run", progress=False)
    from vidiff.data import collate
    batch = collate([trainer.task.dataset.item(0, j, 2) for j in range(2)])     # both clips: one bucket

    def loss() -> float:
        with torch.no_grad():
            return sum(trainer.task.loss(trainer.model, batch, torch.Generator().manual_seed(s), slice(0, 2),
                                         nullcontext())[0].item() for s in range(8)) / 8
    before = loss()
    trainer.train()
    return trainer, before, loss(), tmp / "run" / "checkpoints" / "step_00000040"


def test_lora_training_on_a_folder_lowers_the_loss_and_keeps_the_base_bit_identical(wan_dir, lora_run):
    from safetensors.torch import load_file
    trainer, before, after, folder = lora_run
    assert after < 0.92 * before, (before, after)       # the flow loss has a floor: the noise at high t
    base = load_file(wan_dir / "transformer" / "diffusion_pytorch_model.safetensors")
    trained = trainer.model.transformer.state_dict()
    assert all(torch.equal(trained[k], v) for k, v in base.items())
    assert set(load_file(folder / "model.safetensors")) == {f"transformer.{k}" for k in trained if ".lora." in k}
    sheet = folder.parents[1] / "samples" / "step_00000040.png"     # train.sample_prompts at the last step
    assert sheet.is_file() and (folder.parents[1] / "samples" / "step_00000040.txt").read_text().count("ball") == 2
    model = json.loads((folder / "config.json").read_text())["model"]
    assert "type" not in model and "unet3d" not in model         # no U-Net fields for a Wan run


def test_a_trained_lora_gives_the_same_video_in_diffusers_and_vidiff(wan_dir, lora_run):
    lora = lora_run[3] / "lora.safetensors"
    ours_with, theirs_with = ours(wan_dir, lora=lora), reference(wan_dir, lora=lora)
    assert np.abs(ours_with - theirs_with).max() <= TOLERANCE
    assert np.abs(ours_with - ours(wan_dir)).mean() > 1            # and the adapter does something
    comfy = lora_run[3] / "lora_comfy.safetensors"                  # ComfyUI's keys, through diffusers' converter
    assert np.abs(reference(wan_dir, lora=comfy) - ours_with).max() <= TOLERANCE
    run = lora_run[3].parent.parent                                # the run folder as a model: base + adapter
    sampling = SampleOptions(STEPS, GUIDANCE, progress=False)
    as_model = VideoPipeline.from_pretrained(run)(PROMPT, generator=torch.Generator().manual_seed(0), sampling=sampling,
                                                  output_type="uint8", **OURS).pixels.astype(int)
    assert np.abs(as_model - ours_with).max() <= TOLERANCE


def test_peft_loads_vidiffs_adapter_folder(wan_dir, lora_run):
    from diffusers import WanTransformer3DModel
    from peft import PeftModel
    trainer, folder = lora_run[0], lora_run[3]
    theirs = PeftModel.from_pretrained(WanTransformer3DModel.from_pretrained(str(wan_dir / "transformer")),
                                       str(folder / "peft")).eval()
    mine = VideoPipeline.from_pretrained(wan_dir)
    mine.load_lora(folder / "lora.safetensors")
    x, t, context = torch.randn(1, 4, 3, 4, 6), torch.tensor([500.0]), torch.randn(1, 7, 16)
    with torch.no_grad():
        a = mine.bundle.backbone(x, t, context)
        b = theirs(hidden_states=x, timestep=t, encoder_hidden_states=context, return_dict=False)[0]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_vidiff_loads_a_lora_that_peft_and_diffusers_wrote(wan_dir, tmp_path):
    from diffusers import WanTransformer3DModel
    from peft import LoraConfig, get_peft_model_state_dict
    transformer = WanTransformer3DModel.from_pretrained(str(wan_dir / "transformer"))
    transformer.add_adapter(LoraConfig(r=2, lora_alpha=4, target_modules=["to_q", "to_v", "ffn.net.2"],
                                       init_lora_weights=False))
    WanPipeline.save_lora_weights(str(tmp_path), transformer_lora_layers=get_peft_model_state_dict(transformer),
                                  transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict())
    lora = tmp_path / "pytorch_lora_weights.safetensors"
    assert np.abs(ours(wan_dir, lora=lora) - reference(wan_dir, lora=lora)).max() <= TOLERANCE
    other = save_random_wan(tmp_path / "other", seed=1)        # same architecture, other weights: works, as in diffusers
    mine = VideoPipeline.from_pretrained(other)
    mine.load_lora(lora)
    own = tmp_path / "own.safetensors"                         # an adapter of vidiff's own model: refused
    from conftest import tiny_config_dict
    from vidiff.config import config_from_dict
    from vidiff.models import build_model
    from vidiff.models.lora import add_lora, save_lora
    cfg = config_from_dict(tiny_config_dict())
    own_model = build_model(cfg.model, cfg.trained_words())
    add_lora(own_model, "default", 2, 2.0, ["backbone.*.to_q"])
    save_lora(own_model, "default", own, ["backbone.*.to_q"])
    with pytest.raises(VidiffError, match="made for another base model"):
        mine.load_lora(own)


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
def test_two_processes_split_the_tokens_and_make_the_same_video_as_one(wan_dir, tmp_path):
    """vidiff generate under torchrun (gloo): each process holds half of every block's tokens."""
    import os

    from PIL import Image
    args = ["-m", "vidiff", "generate", PROMPT, "--model", str(wan_dir), "--size", "32x48", "--frames", "9",
            "--steps", "3", "--scale", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one.png")], capture_output=True, text=True,
                         timeout=300)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *args, "--out", str(tmp_path / "two.png")], capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-1500:], two.stderr[-1500:])
    a, b = (np.asarray(Image.open(tmp_path / f"{n}.png")).astype(int) for n in ("one", "two"))
    assert a.shape == b.shape and np.abs(a - b).max() <= TOLERANCE


def test_a_full_fine_tune_exports_a_transformer_diffusers_loads(wan_dir, lora_run, tmp_path):
    """Without train.lora every weight trains; `vidiff export` writes the transformer folder."""
    from diffusers import WanTransformer3DModel
    from safetensors.torch import load_file

    from vidiff.config import config_from_dict
    from vidiff.training import Trainer
    values = lora_run[0].cfg.to_dict()
    values["train"].update(steps=2, lora={"rank": 0}, lr=1e-3, checkpoint_every=2)
    Trainer(config_from_dict(values), tmp_path / "full", progress=False).train()
    r = subprocess.run([sys.executable, "-m", "vidiff", "export", str(tmp_path / "full"), str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    exported = WanTransformer3DModel.from_pretrained(str(tmp_path / "out")).state_dict()
    ema = load_file(tmp_path / "full" / "checkpoints" / "step_00000002" / "ema.safetensors")
    assert all(torch.equal(exported[k.removeprefix("transformer.")], v) for k, v in ema.items())
    base = load_file(wan_dir / "transformer" / "diffusion_pytorch_model.safetensors")
    assert any(not torch.equal(exported[k], v) for k, v in base.items())          # it did train
    r = subprocess.run([sys.executable, "-m", "vidiff", "export", str(lora_run[3]), str(tmp_path / "lora")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "pass --merge-lora" in r.stderr


def test_encoded_clips_are_cached_on_disk_and_reused_until_a_file_changes(wan_dir, lora_run):
    """A second run on the same clips reads the cache (the VAE never runs); a changed clip is encoded again."""
    from vidiff.config import config_from_dict
    from vidiff.data.io import save_video
    from vidiff.models.external import load_open_bundle
    from vidiff.training.open_model import encode_folder
    trainer = lora_run[0]
    cfg = config_from_dict(trainer.cfg.to_dict())
    bundle = load_open_bundle(wan_dir)
    calls, encode = [], bundle.codec.encode
    bundle.codec.encode = lambda video: calls.append(1) or encode(video)
    clips, null = encode_folder(bundle, cfg, torch.device("cpu"))
    assert calls == [] and len(clips) == 2 and null.shape == (512, 16)
    assert torch.equal(clips.item(0, 0, 1)["latents"], trainer.task.dataset.item(0, 0, 1)["latents"])
    files = sorted((lora_run[3].parents[2] / "clips").glob("*.mp4"))
    save_video(np.full((9, 32, 32, 3), 200, np.uint8), files[0], fps=8, overwrite=True)
    again, _ = encode_folder(bundle, cfg, torch.device("cpu"))
    assert calls == [1], (len(again), files)                 # only the changed clip


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_lora_training_on_two_processes_gives_the_one_process_adapter(wan_dir, tmp_path, parallel):
    """The same global batch on 2 gloo processes (each encodes its share of the clips into the cache)."""
    import os

    import yaml
    from safetensors.torch import load_file

    from vidiff.data.io import save_video
    (tmp_path / "clips").mkdir()
    for i, caption in enumerate(["a red ball bounces", "a blue ball bounces", "a dog runs", "a cat walks"]):
        frames = np.zeros((9, 32, 32, 3), np.uint8)
        frames[:, 10:20, 4 + 4 * i:14 + 4 * i, i % 3] = 255
        save_video(frames, tmp_path / "clips" / f"c{i}.mp4", fps=8)
        (tmp_path / "clips" / f"c{i}.txt").write_text(caption)
    values = {"model": {"pretrained": str(wan_dir)},
              "data": {"type": "folder", "frames": 9, "size": 32,
                       "folder": {"path": str(tmp_path / "clips"), "cache": str(tmp_path / "cache")}},
              "train": {"steps": 3, "batch_size": 2, "lr": 1e-3, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 3,
                        "sample_every": 0, "cfg_dropout": 0.0, "lora": {"rank": 4}, "parallel": parallel}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(values))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    base = ["-m", "vidiff", "train", "--config", str(tmp_path / "run.yaml"), "--no-progress", "--out"]
    one = subprocess.run([sys.executable, *base, str(tmp_path / "one")], capture_output=True, text=True, timeout=300)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *base,
                          str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-1500:], two.stderr[-1500:])
    a, b = (load_file(tmp_path / run / "checkpoints" / "step_00000003" / "lora.safetensors") for run in ("one", "two"))
    assert a.keys() == b.keys()
    for name in a:        # Adam's first steps normalise near-zero gradients: a few elements differ by ~3e-5
        torch.testing.assert_close(b[name], a[name], atol=1e-4, rtol=1e-3)
    losses = [[h["loss"] for h in json.loads((tmp_path / run / "checkpoints" / "step_00000003" / "state.json")
                                             .read_text())["history"]] for run in ("one", "two")]
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
