"""Encoded clips and captions on disk, written once and reused by every run and resume (musubi-tuner's,
diffusion-pipe's and ai-toolkit's latent caches).

An entry's key is a hash of what made it: the file's bytes (not its name or date), the clip it was cut
to (frames, size, stride, crop seed), and the identity of the encoder (its class, config and a probe
of its weights), so a changed file, recipe or model never reads a stale entry. Latents and text
states are stored in bf16 and read back as float32, one small file each, so host memory holds
only the batch being trained.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

CHUNK = 1 << 20


def default_folder() -> Path:
    """$VIDIFF_CACHE, else $XDG_CACHE_HOME/vidiff/encoded, else ~/.cache/vidiff/encoded."""
    if os.environ.get("VIDIFF_CACHE"):
        return Path(os.environ["VIDIFF_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vidiff" / "encoded"


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def identity(module: nn.Module) -> str:
    """An encoder's identity without hashing gigabytes: its class, its config, its size and a probe of
    its first and last weights (another checkpoint of the same architecture differs there)."""
    params = list(module.parameters())
    config = getattr(module, "config", None)
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config) if config is not None else {}
    probe = [p.detach().flatten()[:64].float().cpu().tolist() for p in (params[0], params[-1])] if params else []
    text = json.dumps([type(module).__name__, config, sum(p.numel() for p in params), probe], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:40]


class DiskCache:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, k: str) -> Path:
        return self.folder / k[:2] / f"{k}.safetensors"

    def get(self, k: str) -> Tensor | None:
        path = self.path(k)
        if not path.is_file():
            return None
        try:
            return load_file(str(path))["x"].float()
        except Exception:              # a damaged entry (a crash mid-write elsewhere): encode it again
            return None

    def put(self, k: str, x: Tensor) -> Path:
        path = self.path(k)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        save_file({"x": x.detach().to(torch.bfloat16).cpu().contiguous()}, str(tmp))
        tmp.replace(path)              # atomic: processes filling one cache never see half an entry
        return path
