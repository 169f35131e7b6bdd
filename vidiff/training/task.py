"""What an objective gives the training loop (trainer.py): the network, its data and its loss. A task
subclasses Task and overrides what it needs; the defaults are an objective with nothing extra."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..models.lora import LORA_NAME, save_lora
from .run_folder import RunFolder


class Task:
    model_type: str                 # written into the weights' metadata (a checkpoint of another kind is refused)
    sections: tuple[str, ...]       # config sections a resumed run must not change
    model: nn.Module                # the network the optimizer trains
    dataset: object                 # item(micro_index, position, batch_size) -> one clip's dict
    lora: bool = False              # does new_model() carry train.lora's adapters (else train.lora is refused)
    frozen_base: bool = False       # checkpoints hold only the trained parameters (the rest: a pretrained model's)

    def new_model(self) -> nn.Module:
        """A fresh, unsharded copy of the network (to gather a sharded EMA into, for samples), with every
        module the trained one has (train.lora's adapters included)."""
        raise NotImplementedError

    def loss(self, net: nn.Module, batch: dict, generator: torch.Generator, part: slice, autocast) -> tuple[Tensor, dict]:
        """(loss, extra values to log) of this process's `part` of a batch, kept on the device."""
        raise NotImplementedError

    def write_samples(self, model: nn.Module, run: RunFolder, step: int) -> None:
        raise NotImplementedError

    def save_adapter(self, model: nn.Module, folder: Path) -> None:
        """train.lora's adapter of the (unsharded EMA) model, beside checkpoint `folder`'s weights:
        kilobytes, for `vidiff generate --lora`."""
        save_lora(model, LORA_NAME, folder / "lora.safetensors", self.cfg.train.lora.targets)

    def backbone(self) -> nn.Module | None:
        """The video backbone whose temporal layers inflation and image training reset; None if none."""
        return None

    def after_step(self, step: int) -> dict:
        """Work after each optimizer step (e.g. a discriminator's update); extra values to log."""
        return {}

    def extra_weights(self) -> dict:
        """More networks to store as <name>.safetensors in each checkpoint."""
        return {}

    def extra_metadata(self) -> dict:
        """Metadata of those files, by name."""
        return {}

    def extra_optimizers(self) -> dict:
        """More optimizer states for optimizer.pt, by name."""
        return {}

    def resume(self, folder: Path, optimizers: dict) -> None:
        """Restore what extra_weights and extra_optimizers saved."""
