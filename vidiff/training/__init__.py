"""Training: one loop (trainer.py) for every objective (diffusion.py, vae.py), EMA, the learning-rate
schedule, data-parallel wrapping, run folders with crash-safe checkpoints."""
from .diffusion import DiffusionTask
from .trainer import Trainer
from .vae import VAETask

__all__ = ["DiffusionTask", "Trainer", "VAETask"]
