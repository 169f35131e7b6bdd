"""vidiff: train, sample and evaluate video diffusion models."""
__version__ = "0.1.0"
