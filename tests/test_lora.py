"""LoRA adapters: no change at init, merge equals the adapted model, a LoRA fine-tune learns a clip with the
base frozen, files in peft's naming that refuse another base model, and the CLI around them."""
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from conftest import tiny_config_dict
from test_training import fixed_loss
from vidiff.checkpoint import load_model
from vidiff.config import config_from_dict
from vidiff.errors import VidiffError
from vidiff.models import build_model
from vidiff.models.lora import add_lora, load_lora, merge_lora, save_lora
from vidiff.pipeline import SampleOptions, VideoPipeline
from vidiff.training import Trainer

TARGETS = ["backbone.*.to_q", "backbone.*.to_kv", "backbone.*.to_out"]


def tiny_model(seed=0, **unet):
    cfg = config_from_dict(tiny_config_dict())
    cfg.model.unet3d.__dict__.update(unet)
    torch.manual_seed(seed)
    model = build_model(cfg.model, cfg.trained_words()).eval()
    with torch.no_grad():          # the zero-initialised output layers would hide every difference
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def run(model, seed=0):
    torch.manual_seed(seed)
    x, ids = torch.randn(2, 3, 4, 16, 16), model.tokenizer.encode(["a red circle bouncing"] * 2)
    with torch.no_grad():
        return model(x, torch.tensor([0.5, -1.0]), ids=ids)


def randomise(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora." in name:
                p.copy_(torch.randn_like(p) * 0.1)


def test_an_adapter_changes_nothing_at_init_bit_for_bit():
    model = tiny_model()
    before = run(model)
    assert before.abs().mean() > 1e-3
    layers = add_lora(model, "a", rank=4, alpha=4.0, targets=TARGETS)
    assert layers and all(n.endswith(("to_q", "to_kv", "to_out")) for n in layers)
    assert torch.equal(run(model), before)


def test_merged_weights_equal_the_adapted_model_and_stacked_adapters_add_up():
    model = tiny_model()
    base = run(model)
    add_lora(model, "a", rank=4, alpha=8.0, targets=TARGETS)
    add_lora(model, "b", rank=2, alpha=2.0, targets=["temporal"], scale=0.5)
    randomise(model)
    adapted = run(model)
    assert not torch.allclose(adapted, base, atol=1e-3)
    assert merge_lora(model) > 0 and not any(".lora." in n for n in model.state_dict())
    torch.testing.assert_close(run(model), adapted, atol=1e-5, rtol=1e-4)


def test_a_file_in_peft_naming_round_trips_and_refuses_another_base(tmp_path):
    model = tiny_model()
    add_lora(model, "default", rank=4, alpha=4.0, targets=TARGETS)
    randomise(model)
    path = save_lora(model, "default", tmp_path / "lora.safetensors", TARGETS)
    with safe_open(str(path), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert all(k.startswith("base_model.model.backbone.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys)
    assert meta["r"] == "4" and path.stat().st_size < 100_000
    assert path.stat().st_mode & 0o044 == 0o044 & ~_umask()       # readable like every other file (not 0600)
    fresh = tiny_model()
    assert load_lora(fresh, path, scale=1.0) == "lora"
    torch.testing.assert_close(run(fresh), run(model), atol=1e-6, rtol=1e-5)
    bf16 = tiny_model().to(torch.bfloat16)
    load_lora(bf16, path)                                     # the same base, cast: still accepted
    with pytest.raises(VidiffError, match="trained on another base model"):
        load_lora(tiny_model(seed=1), path)                   # same architecture, other weights
    with pytest.raises(VidiffError, match="made for another base model"):
        load_lora(tiny_model(base_channels=32), path)         # another architecture
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(VidiffError, match="not a LoRA adapter file"):
        load_lora(fresh, tmp_path / "junk.safetensors")


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
def test_a_lora_fine_tune_learns_one_clip_with_the_base_frozen(tmp_path):
    values = tiny_config_dict(steps=60, lr=2e-3, warmup_steps=5, checkpoint_every=1000, cfg_dropout=0.0)
    values["diffusion"] = {"prediction": "x0", "loss_weighting": "none"}
    Trainer(config_from_dict(values), tmp_path / "base", progress=False).train()
    values = tiny_config_dict(steps=150, lr=3e-3, warmup_steps=5, checkpoint_every=150, cfg_dropout=0.0,
                              init_from=str(tmp_path / "base"), lora={"rank": 8, "alpha": 32.0, "targets": ["backbone.*"]})
    values["diffusion"] = {"prediction": "x0", "loss_weighting": "none"}
    values["data"]["shapes"]["num_clips"] = 1
    values["data"]["seed"] = 5                                 # a clip the base never saw
    trainer = Trainer(config_from_dict(values), tmp_path / "lora", progress=False)
    clip = trainer.task.dataset[0]
    before = fixed_loss(trainer, clip)
    trainer.train()
    after = fixed_loss(trainer, clip)
    assert after < 0.5 * before, (before, after)
    base, _, _ = load_model(tmp_path / "base")
    tuned = dict(trainer.model.named_parameters())
    assert all(torch.equal(p, tuned[n]) for n, p in base.named_parameters())      # the base stayed frozen
    adapter = tmp_path / "lora" / "checkpoints" / "step_00000150" / "lora.safetensors"
    assert adapter.is_file() and adapter.stat().st_size < 0.5 * (tmp_path / "base" / "checkpoints" /
                                                                   "step_00000060" / "model.safetensors").stat().st_size
    # the average holds the frozen base once (the model's own tensors), and its own copy of the adapters
    average = dict(trainer.ema.model.named_parameters())
    for name, p in trainer.model.named_parameters():
        assert (average[name].data_ptr() == p.data_ptr()) == (not p.requires_grad), name
    assert not all(torch.equal(average[n], p) for n, p in tuned.items() if p.requires_grad)     # and it averaged them


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
def test_cli_generate_with_lora_export_merged_and_tune_lora(tmp_path):
    values = tiny_config_dict(steps=2, checkpoint_every=2)
    Trainer(config_from_dict(values), tmp_path / "base", progress=False).train()
    values = tiny_config_dict(steps=2, checkpoint_every=2, init_from=str(tmp_path / "base"), lora={"rank": 2})
    Trainer(config_from_dict(values), tmp_path / "lora", progress=False).train()

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "vidiff", *args], capture_output=True, text=True, timeout=300)
    common = ["a red circle bouncing", "--steps", "2", "--frames", "4", "--seed", "3"]
    r = cli("generate", *common, "--model", str(tmp_path / "base"), "--lora", str(tmp_path / "lora"),
            "--lora-scale", "0.5", "--out", str(tmp_path / "a.mp4"))
    assert r.returncode == 0, r.stderr[-2000:]
    r = cli("export", str(tmp_path / "lora"), str(tmp_path / "plain"))
    assert r.returncode == 2 and "--merge-lora" in r.stderr and "Traceback" not in r.stderr
    r = cli("export", str(tmp_path / "lora"), str(tmp_path / "merged"), "--merge-lora")
    assert r.returncode == 0, r.stderr[-2000:]
    videos = [VideoPipeline.from_pretrained(tmp_path / name)("a red circle", sampling=SampleOptions(2, progress=False),
                                                             generator=torch.Generator().manual_seed(0)).pixels
              for name in ("lora", "merged")]
    assert abs(videos[0].astype(int) - videos[1].astype(int)).max() <= 1
    r = cli("generate", *common, "--lora", str(tmp_path / "lora"), "--out", str(tmp_path / "b.mp4"))
    assert r.returncode == 2 and "another base model" in r.stderr and "Traceback" not in r.stderr
    from vidiff.data.io import save_video, to_uint8
    from vidiff.checkpoint import resolve_checkpoint
    clip = first_clip()
    save_video(to_uint8(clip["video"]), tmp_path / "clip.mp4")
    r = cli("tune", str(tmp_path / "clip.mp4"), clip["caption"], "--model", str(tmp_path / "base"), "--out",
            str(tmp_path / "tuned"), "--steps", "2", "--lora", "2", "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    tuned = resolve_checkpoint(tmp_path / "tuned")
    assert (tuned / "lora.safetensors").is_file() and load_model(tmp_path / "tuned")[1].train.lora.rank == 2


def first_clip():
    from vidiff.data import ShapesDataset
    return ShapesDataset(config_from_dict(tiny_config_dict()).data)[0]


def _umask() -> int:
    import os
    mask = os.umask(0)
    os.umask(mask)
    return mask
