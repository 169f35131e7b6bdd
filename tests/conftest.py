import torch

torch.set_num_threads(1)  # tests are small; one thread avoids oversubscribing 2-core machines

import pytest

from vidiff.config import config_from_dict


def tiny_config_dict(**train) -> dict:
    """A model small enough to train for a few steps in a test (about 0.1 M parameters)."""
    return {
        "model": {"unet3d": {"base_channels": 16, "channel_mults": [1, 2], "attention_levels": [1], "head_dim": 16,
                             "groups": 8}, "text": {"dim": 32, "layers": 1, "heads": 2}},
        "data": {"frames": 4, "size": 16, "shapes": {"max_objects": 1, "radius": [0.25, 0.3]}},
        "train": {"steps": 4, "batch_size": 2, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 2,
                  "sample_every": 1000, "sample_steps": 2, "ema_decay": 0.9, **train},
    }


@pytest.fixture
def tiny_config():
    return config_from_dict(tiny_config_dict())


def train_frame_conditioned(values: dict, run, num_clips: int):
    """Train a tiny frame-conditioned model on `num_clips` fixed clips with the x0 target (memorisable at
    every noise level), as the frame-conditioning and stride tests need; returns the Trainer."""
    from vidiff.training import Trainer
    values["model"]["frame_conditioning"] = True
    values["data"]["shapes"]["num_clips"] = num_clips
    values["diffusion"] = {"prediction": "x0", "loss_weighting": "none"}
    trainer = Trainer(config_from_dict(values), run, progress=False)
    trainer.train()
    return trainer
