"""`vidiff tune VIDEO CAPTION --out RUN`: one-shot video tuning (Wu et al. 2023, "Tune-A-Video"): a
text-to-video model fine-tuned on one clip, only its temporal layers and its attention queries
(the rest frozen), so it learns the clip's motion and keeps what it knows about appearance; then
`vidiff generate --model RUN "another prompt"` makes variations. The clip is copied into the run
folder (RUN/clip/), so the run can be resumed from it alone."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..checkpoint import read_config, resolve_checkpoint
from ..config import Config, FolderConfig, LoRAConfig
from ..errors import VidiffError

TRAINABLE = "temporal,backbone.*.to_q.*"     # Tune-A-Video: temporal attention and the attention queries
LORA_TARGETS = ["temporal", "backbone.*.to_q"]  # the same layers, as LoRA targets (module names)


def tune_config(video: Path, caption: str, model: str, out: Path, steps: int = 300, lr: float = 1e-4,
                lora: int = 0) -> Config:
    """The tuning run's config; lora > 0: a LoRA adapter of that rank on the same layers instead (the
    model's weights stay frozen; the run's lora.safetensors is the result)."""
    if not video.is_file():
        raise VidiffError(f"video '{video}' not found")
    if not caption.strip():
        raise VidiffError("the caption is empty; describe the clip with the model's words")
    folder = resolve_checkpoint(model)
    cfg = read_config(folder)
    clip = out / "clip"
    clip.mkdir(parents=True, exist_ok=True)
    shutil.copy(video, clip / f"clip{video.suffix.lower()}")
    (clip / "clip.txt").write_text(caption.strip() + "\n")
    cfg.data.type = "folder"
    cfg.data.folder = FolderConfig(path=str(clip), fixed_clips=True, image_every=0)
    t = cfg.train
    t.init_from, t.vae = str(model), str(model) if (folder / "vae.safetensors").is_file() else ""
    t.trainable, t.steps, t.lr, t.lr_decay, t.warmup_steps = TRAINABLE, steps, lr, "constant", 10
    t.cfg_dropout, t.time_limit_minutes, t.ema_decay = 0.1, 0.0, 0.99
    t.sample_every = t.checkpoint_every = max(1, steps // 3)
    t.batch_size, t.grad_accum = 2, 1
    t.distill.teacher = ""
    if lora:
        t.lora = LoRAConfig(rank=lora, alpha=float(lora), targets=LORA_TARGETS)
    return cfg
