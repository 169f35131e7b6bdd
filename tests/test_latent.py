"""Latent diffusion end to end: a VAE run, a diffusion run on its latents, generation through the
pipeline in pixels, and the VAE travelling inside the checkpoint."""
import pytest
import torch

from conftest import tiny_config_dict
from test_vae import vae_values
from vidiff.config import config_from_dict
from vidiff.pipeline import VideoPipeline
from vidiff.training.checkpoint import export_pretrained
from vidiff.training.trainer import Trainer
from vidiff.training.vae_trainer import VAETrainer


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("vae") / "run"
    VAETrainer(config_from_dict(vae_values(steps=20)), run, progress=False).train()
    return run


@pytest.mark.parametrize("backbone", ["unet3d", "dit"])
def test_train_on_latents_then_generate_pixels(tmp_path, vae_run, backbone):
    values = tiny_config_dict(steps=3, checkpoint_every=3, vae=str(vae_run))
    values["data"]["num_clips"] = 2
    if backbone == "dit":
        values["model"] = {"type": "dit", "width": 32, "depth": 1, "head_dim": 16, "patch": [1, 1, 1],
                           "text": {"dim": 32, "layers": 1, "heads": 2}}
    trainer = Trainer(config_from_dict(values), tmp_path / "run", progress=False)
    assert trainer.cfg.diffusion.space == "latent" and trainer.cfg.model.in_channels == 4
    assert 0 < trainer.cfg.vae.latent_scale < 100
    trainer.train()
    assert len(trainer.latent_cache) == 2                       # two clips, encoded once each
    folder = export_pretrained(tmp_path / "run", tmp_path / "exported")
    assert (folder / "vae.safetensors").is_file()
    pipe = VideoPipeline.from_pretrained(folder, device="cpu")
    out = pipe("a red circle bouncing", num_inference_steps=2, progress=False)
    assert out.frames.shape == (1, 4, 16, 16, 3)                 # pixels, decoded from 4x4 latents
    from vidiff.errors import VidiffError
    with pytest.raises(VidiffError, match="multiples of"):
        pipe("a red circle bouncing", height=10, width=10, num_inference_steps=2, progress=False)
    # resuming reads the latent set-up from the checkpoint, not from the VAE run
    resumed = Trainer(config_from_dict({**values, "train": {**values["train"], "steps": 4}}), tmp_path / "run",
                      resume=True, progress=False)
    assert resumed.cfg.vae.latent_scale == trainer.cfg.vae.latent_scale
    resumed.train()
