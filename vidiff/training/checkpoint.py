"""Checkpoints are folders: config.json + model.safetensors (+ ema.safetensors, optimizer.pt,
state.json while training). Folders are written under a temporary name, fsynced and renamed, so a
crash mid-write leaves the previous checkpoints intact and never a half-written one."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import Config, config_from_dict
from ..errors import VidiffError

FORMAT = "vidiff-checkpoint-1"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


StateLike = nn.Module | dict


def _state_tensors(state: StateLike) -> dict[str, torch.Tensor]:
    state = state.state_dict() if isinstance(state, nn.Module) else state
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def write_checkpoint(folder: str | Path, config: Config, model: StateLike, ema: StateLike | None = None,
                     optimizer: torch.optim.Optimizer | dict | None = None, state: dict | None = None,
                     model_type: str | None = None, extra: dict[str, StateLike] | None = None) -> Path:
    """Atomically create `folder`; refuses to replace an existing one. Weights and optimizer state
    may be given as modules/optimizers or as (full, gathered) state dicts."""
    folder = Path(folder)
    if folder.exists():
        raise VidiffError(f"checkpoint '{folder}' already exists; it is never overwritten")
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = {"format": FORMAT, "model_type": model_type or config.model.type}
    config.save(tmp / "config.json")
    save_file(_state_tensors(model), tmp / "model.safetensors", metadata=meta)
    if ema is not None:
        save_file(_state_tensors(ema), tmp / "ema.safetensors", metadata=meta)
    for name, weights in (extra or {}).items():      # e.g. the VAE a latent model decodes with
        save_file(_state_tensors(weights), tmp / f"{name}.safetensors", metadata={"format": FORMAT, "model_type": name})
    if optimizer is not None:
        torch.save(optimizer if isinstance(optimizer, dict) else optimizer.state_dict(), tmp / "optimizer.pt")
    if state is not None:
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    for f in tmp.iterdir():
        _fsync(f)
    os.rename(tmp, folder)
    _fsync(folder.parent)
    return folder


def write_pointer(run_dir: Path, name: str) -> None:
    """Point run_dir/latest at a checkpoint folder name (atomic replace)."""
    tmp = run_dir / ".latest.tmp"
    tmp.write_text(name + "\n")
    _fsync(tmp)
    os.replace(tmp, run_dir / "latest")


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder whose `latest` names one."""
    path = Path(path)
    if (path / "latest").is_file():
        path = path / "checkpoints" / (path / "latest").read_text().strip()
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise VidiffError(f"'{path}' is not a vidiff checkpoint (needs config.json and model.safetensors)")
    return path


def read_config(folder: Path) -> Config:
    try:
        return config_from_dict(json.loads((folder / "config.json").read_text()))
    except json.JSONDecodeError as e:
        raise VidiffError(f"'{folder / 'config.json'}' is not valid JSON: {e}") from None


def load_weights(module: nn.Module, file: Path, config: Config, model_type: str | None = None) -> None:
    """Load safetensors weights, with a one-line error for files from another model or architecture."""
    model_type = model_type or config.model.type
    try:
        tensors = load_file(file)
        from safetensors import safe_open
        with safe_open(file, "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise VidiffError(f"cannot read weights '{file}': {e}") from None
    if meta.get("model_type", model_type) != model_type:
        raise VidiffError(f"weights '{file}' are for a '{meta['model_type']}' model, not a '{model_type}'; "
                          "use the config.json saved with them, or the right kind of checkpoint")
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        what = (f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'" if unexpected
                else f"'{wrong[0]}' has shape {tuple(tensors[wrong[0]].shape)}, "
                     f"expected {tuple(expected[wrong[0]].shape)}")
        raise VidiffError(f"weights '{file}' do not fit the model in its config.json ({what}); "
                          "the checkpoint comes from another architecture or size")
    module.load_state_dict(tensors)


def export_pretrained(source: str | Path, folder: str | Path) -> Path:
    """Write an inference-only checkpoint (config.json + the EMA weights as model.safetensors)."""
    source = resolve_checkpoint(source)
    config = read_config(source)
    from ..models import TextToVideoModel
    model = TextToVideoModel(config.model)
    weights = source / "ema.safetensors"
    load_weights(model, weights if weights.is_file() else source / "model.safetensors", config)
    extra = {"vae": load_file(source / "vae.safetensors")} if (source / "vae.safetensors").is_file() else None
    return write_checkpoint(folder, config, model, extra=extra)
