"""A training run's folder: config.json, checkpoints/step_XXXXXXXX/ (atomic), a `latest` pointer,
loss.png. A folder that already has checkpoints is only ever continued (--resume), never reused."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import torch

from ..checkpoint import resolve_checkpoint, write_checkpoint, write_pointer
from ..config import Config
from ..errors import VidiffError
from .plots import save_loss_plot


def intact(folder: Path) -> bool:
    """Do a checkpoint's files read: its state, its optimizer state and the headers of its weights?"""
    from safetensors import SafetensorError, safe_open
    try:
        json.loads((folder / "state.json").read_text())
        torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
        for weights in folder.glob("*.safetensors"):
            with safe_open(str(weights), "pt") as f:
                f.keys()
        return True
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError):
        return False


def damaged(folder: Path, name: str, error: Exception) -> VidiffError:
    """The one-line error of a checkpoint a crash or a full disk left incomplete, naming the way out:
    the newest earlier checkpoint that is itself intact, if there is one."""
    earlier = sorted((p for p in folder.parent.iterdir() if p.name.startswith("step_") and p.name < folder.name),
                     reverse=True)
    good = next((p.name for p in earlier if intact(p)), None)
    fix = (f"write '{good}' into {folder.parent.parent / 'latest'} to resume from the newest intact checkpoint before it"
           if good else "no earlier checkpoint is intact either: start the run again")
    return VidiffError(f"checkpoint '{folder}' is damaged ({name}: {type(error).__name__}); {fix}")


class RunFolder:
    def __init__(self, path: str | Path, main: bool = True):
        self.path, self.main = Path(path), main
        self.checkpoints = self.path / "checkpoints"

    def start(self, resume: bool) -> Path | None:
        """The checkpoint to resume from (None for a new run); refuses to reuse a run by accident."""
        if self.path.exists() and not self.path.is_dir():
            raise VidiffError(f"--out '{self.path}' is a file; give a folder for the run")
        if resume:
            if not (self.path / "latest").is_file():
                raise VidiffError(f"nothing to resume in '{self.path}' (no 'latest' checkpoint); drop --resume")
            return resolve_checkpoint(self.path)
        if self.checkpoints.exists() and any(self.checkpoints.iterdir()):
            raise VidiffError(f"run folder '{self.path}' already has checkpoints; pass --resume to "
                              "continue it or choose another --out")
        return None

    @staticmethod
    def state(folder: Path) -> dict:
        try:
            return json.loads((folder / "state.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise damaged(folder, "state.json", e) from None

    def save_config(self, cfg: Config) -> None:
        if self.main:
            self.path.mkdir(parents=True, exist_ok=True)
            cfg.save(self.path / "config.json")

    def save(self, step: int, cfg: Config, keep_last: int, **checkpoint) -> Path:
        """Write checkpoint `step` (unless it exists), point `latest` at it, keep the last `keep_last`."""
        name = f"step_{step:08d}"
        if not (self.checkpoints / name).exists():
            write_checkpoint(self.checkpoints / name, cfg, **checkpoint)
        write_pointer(self.path, name)
        kept = sorted(p for p in self.checkpoints.iterdir() if p.name.startswith("step_"))
        for old in kept[:-keep_last]:
            shutil.rmtree(old)
        return self.checkpoints / name

    def plot(self, history: list[dict]) -> None:
        save_loss_plot(history, self.path / "loss.png")
