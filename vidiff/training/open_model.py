"""Fine-tuning a diffusers-format open model (Wan 2.1) on a folder of captioned clips: `model:
{pretrained: DIR}` in a `vidiff train` recipe, usually with `train.lora`.

Every clip is encoded once (its VAE latents and its caption's text states) into a disk cache that
later runs and resumes reuse (latent_cache.py); the VAE and the text encoder are then dropped, so only
the transformer is on the device while it trains (with model.blocks_to_swap, not even all of it). The loss is rectified-flow matching as Wan was trained: z = (1 - s) x0 + s eps
at the directory's shifted flow time s, the velocity eps - x0 as the target. Precision follows
train.precision (bf16 autocast on a GPU), with the transformer's activation checkpointing unless
model.pretrained_checkpointing is off. A checkpoint holds only what trains (the frozen base stays in
the directory); a LoRA run also writes its adapter in diffusers' key names (lora.safetensors, for
`WanPipeline.load_lora_weights` and `vidiff generate --model DIR --lora FILE`) and as a peft adapter
folder (peft/, for `PeftModel.from_pretrained`), and in ComfyUI's `diffusion_model.` keys with lora_down / lora_up
and alpha (lora_comfy.safetensors).
"""
from __future__ import annotations

import gc
from dataclasses import replace
from pathlib import Path
from time import perf_counter

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..checkpoint import open_lora_targets
from ..config import Config
from ..data import build_dataset
from ..devices import sample_randn
from ..diffusion import training_times
from ..diffusion.objectives import masked_mse
from ..errors import VidiffError
from ..models.bundle import Bundle
from ..models.external import family_of, load_open_backbone, load_open_bundle, open_lora_names
from ..models.lora import LORA_NAME, adapter_layers, add_lora, save_lora, save_peft_adapter
from ..models.lora_files import write_lora
from ..pipeline import SampleOptions, VideoPipeline
from ..pipeline.sampling import sample_video
from ..distributed import barrier, current
from .block_swap import place
from .latent_cache import DiskCache, default_folder, file_digest, identity, key
from .plots import save_samples
from .run_folder import RunFolder
from .task import Task


class CachedClips:
    """A folder's clips, each encoded once into the disk cache (latent_cache.py): item() reads a clip's
    latents (C, T, h, w) and caption states (L, D) from it, so host memory holds a batch, not the set.
    item() follows the folder dataset's order (a fresh permutation per epoch, seeded by data.seed)."""

    def __init__(self, cache: DiskCache, keys: list[tuple[str, str]], captions: list[str], seed: int):
        self.cache, self.keys, self.captions, self.seed = cache, keys, captions, seed

    def __len__(self) -> int:
        return len(self.keys)

    def item(self, micro_index: int, position: int, batch_size: int) -> dict:
        epoch, offset = divmod(micro_index * batch_size + position, len(self))
        k = int(np.random.default_rng([self.seed, epoch]).permutation(len(self))[offset])
        latents, text = self.keys[k]
        return {"video": self.cache.get(latents), "context": self.cache.get(text), "caption": self.captions[k]}

    @property
    def latents(self) -> list[Tensor]:
        return [self.cache.get(k) for k, _ in self.keys]

    @property
    def contexts(self) -> list[Tensor]:
        return [self.cache.get(k) for _, k in self.keys]


def encode_folder(bundle: Bundle, cfg: Config, device: torch.device) -> tuple[CachedClips, Tensor]:
    """Every usable clip of the folder through the VAE and every caption through the text encoder, into
    the disk cache (data.folder.cache): what an earlier run or resume encoded is read, not encoded
    again, and the processes of a run each encode their share. Returns the clips and the empty prompt's
    states (caption dropout)."""
    if cfg.data.type != "folder":
        raise VidiffError("fine-tuning a pretrained model takes your own clips: data.type: folder (data.folder.path)")
    # one fixed clip and crop per file: each is encoded once
    d = cfg.data
    dataset = build_dataset(replace(d, folder=replace(d.folder, fixed_clips=True)))
    pool = dataset.videos
    if not pool:                     # images would join videos in frame buckets of their own (not built yet)
        images = len(getattr(dataset, "images", []))
        raise VidiffError(f"'{d.folder.path}' has no usable video of {d.frames} frames"
                          + (f" ({images} images, which a pretrained model's run does not take yet)" if images else "")
                          + "; `vidiff data check FOLDER --config RECIPE` says why each file is skipped")
    cache, dist = DiskCache(d.folder.cache or default_folder()), current()
    codec_id, text_id = identity(bundle.modules["codec"]), identity(bundle.modules["text"])
    clip_spec = (d.frames, d.size, d.folder.frame_stride, d.folder.fps, d.folder.crop, d.seed)
    order = np.random.default_rng([d.seed, 0]).permutation(len(pool))     # the order dataset.item(0, i, 1) takes
    entries = [pool[j] for j in order]
    keys = [(key("latents", file_digest(e.path), str(e.path), clip_spec, codec_id), key("text", e.caption, text_id))
            for e in entries]
    null_key = key("text", "", text_id)
    placed = False
    for i, (entry, (latents, text)) in enumerate(zip(entries, keys)):
        if i % dist.world != dist.rank or (cache.get(latents) is not None and cache.get(text) is not None):
            continue
        if not placed:
            bundle.modules["codec"].to(device)
            bundle.modules["text"].to(device)
            placed = True
        clip = dataset.item(0, i, 1)
        if clip["path"] != str(entry.path):    # it failed to decode and the next file stood in: leave it out
            continue
        cache.put(latents, bundle.codec.encode(clip["video"][None].to(device))[0])
        cache.put(text, bundle.encode([entry.caption], 1)[0][0].float())
    if dist.main and cache.get(null_key) is None:
        bundle.modules["text"].to(device)
        cache.put(null_key, bundle.encode([""], 1)[0][0].float())
    barrier(dist)                              # every share written before anyone reads
    kept = [(k, e.caption) for k, e in zip(keys, entries) if cache.path(k[0]).is_file() and cache.path(k[1]).is_file()]
    return CachedClips(cache, [k for k, _ in kept], [c for _, c in kept], d.seed), cache.get(null_key)


class OpenModelTask(Task):
    sections = ("model", "diffusion", "data")
    lora = True
    frozen_base = True          # a checkpoint holds the trained parameters only

    def __init__(self, cfg: Config, device: torch.device, resume: Path | None = None):
        self.cfg, self.device = cfg, device
        self.model = self.new_model()          # the transformer, loaded once; on the host while the clips encode
        # the text encoder only encodes captions once: bf16 on a GPU (UMT5-XXL: 11 GB, not 23)
        text_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        bundle = load_open_bundle(cfg.model.pretrained, text_dtype, backbone=self.model)
        self.model_type, self.shift = family_of(cfg.model.pretrained), bundle.shift
        d = cfg.data
        VideoPipeline(bundle, "cpu").check_size(d.frames, d.size, d.size)
        self.dataset, self.null = encode_folder(bundle, cfg, device)
        # the sheet's prompts are encoded now, while the text encoder is loaded; only the VAE comes back for it
        prompts = cfg.train.sample_prompts
        self.sample_states = [bundle.encode([p], 1)[0][0].float().cpu() for p in prompts]
        del bundle                   # the VAE and the text encoder leave memory before training starts
        gc.collect()
        blocks, swap = self.model.shard_blocks(), cfg.model.blocks_to_swap
        if swap > len(blocks):
            raise VidiffError(f"model.blocks_to_swap is {swap}; this transformer has {len(blocks)} blocks")
        self.swap = place(self.model, blocks, swap, device)     # all on the device but the swapped blocks

    def new_model(self) -> nn.Module:
        backbone = load_open_backbone(self.cfg.model.pretrained)
        if getattr(backbone, "transformer_2", None) is not None:
            raise VidiffError(f"'{self.cfg.model.pretrained}' has two experts (transformer and transformer_2); training a LoRA per "
                              "expert is not supported yet: train on a one-transformer directory")
        if self.cfg.model.pretrained_checkpointing:
            backbone.transformer.enable_gradient_checkpointing()
        if not self.cfg.train.lora.rank:
            backbone.requires_grad_(True)
        lora = self.cfg.train.lora
        if lora.rank:
            add_lora(backbone.transformer, LORA_NAME, lora.rank, lora.alpha or lora.rank, open_lora_targets(self.cfg))
        return backbone

    def loss(self, net, batch, generator, part, autocast) -> tuple[Tensor, dict]:
        """Flow matching at Wan's shifted times: s = k t / (1 + (k - 1) t)."""
        b, k = self.cfg.train.batch_size, self.shift
        x0 = batch["video"].to(self.device, non_blocking=True)
        context = torch.stack(batch["context"]).to(self.device, non_blocking=True)
        t = training_times(b, generator, self.cfg.diffusion.time_sampling)[part]
        s = (k * t / (1 + (k - 1) * t)).to(self.device).view(-1, 1, 1, 1, 1)
        noise = sample_randn(x0.shape[1:], generator, range(b)[part], self.device)
        drop = (torch.rand(b, generator=generator) < self.cfg.train.cfg_dropout)[part].to(self.device)
        context = torch.where(drop[:, None, None], self.null.to(self.device), context)
        z = (1 - s) * x0 + s * noise
        with autocast:
            velocity = net(z, s.flatten() * 1000, context)
        return masked_mse(velocity, noise - x0).mean(), {}

    def write_samples(self, model: nn.Module, run: RunFolder, step: int) -> None:
        """train.sample_prompts with the run's weights, at the run's clip size, into a sheet: the VAE is
        loaded for it and dropped after (the prompts were encoded at the start). None without prompts."""
        prompts, t, d = self.cfg.train.sample_prompts, self.cfg.train, self.cfg.data
        if not prompts:
            return
        start = perf_counter()
        bundle = load_open_bundle(self.cfg.model.pretrained, backbone=model, text_encoder=False)
        bundle.codec.module.to(self.device)
        o = SampleOptions(t.sample_steps or None, None if t.sample_guidance < 0 else t.sample_guidance,
                          progress=self.progress).resolved(bundle)
        o = o if t.sample_steps else replace(o, steps=min(o.steps, max(2, t.steps)))   # no more sheet than training
        cond = (torch.stack(self.sample_states).to(self.device),)
        null = (self.null[None].expand(len(prompts), -1, -1).to(self.device),)
        with torch.no_grad():
            x = sample_video(bundle, cond, null, bundle.codec.shape(d.frames, d.size, d.size), o,
                             torch.Generator().manual_seed(t.seed))
            path = save_samples(bundle.codec.decode(x), prompts, run.path / "samples", step)
        del bundle
        gc.collect()
        if self.progress:
            tqdm.write(f"sample sheet {path}: {len(prompts)} videos, {o.steps} steps, {perf_counter() - start:.1f} s")

    def save_adapter(self, model: nn.Module, folder: Path) -> None:
        transformer, targets = model.transformer, open_lora_targets(self.cfg)
        save_lora(transformer, LORA_NAME, folder / "lora.safetensors", targets, prefix="transformer.")
        save_peft_adapter(transformer, LORA_NAME, folder / "peft", targets)
        write_lora(adapter_layers(transformer, LORA_NAME), folder / "lora_comfy.safetensors", "comfy",
                   open_lora_names(self.cfg.model.pretrained))


def export_transformer(source: str | Path, folder: str | Path, merge_lora: bool = False) -> Path:
    """A fine-tune of a pretrained model as the library's own transformer folder (diffusers'
    save_pretrained; `WanTransformer3DModel.from_pretrained(folder)` loads it): the run's EMA weights,
    a LoRA run's adapter folded in with merge_lora."""
    from ..checkpoint import load_open_run_backbone, read_config, resolve_checkpoint
    from ..models.lora import merge_lora as fold
    checkpoint, folder = resolve_checkpoint(source), Path(folder)
    cfg = read_config(checkpoint)
    if folder.exists():
        raise VidiffError(f"'{folder}' already exists; it is never overwritten (choose another folder)")
    if bool(cfg.train.lora.rank) != merge_lora:
        raise VidiffError(f"'{checkpoint}' is a LoRA run: pass --merge-lora for a full transformer, or use its adapter "
                          f"'{checkpoint / 'lora.safetensors'}' with `vidiff generate --lora`" if cfg.train.lora.rank
                          else f"'{checkpoint}' has no LoRA adapter to merge (it was not trained with train.lora)")
    backbone = load_open_run_backbone(checkpoint, cfg)
    fold(backbone.transformer)
    backbone.transformer.save_pretrained(str(folder))
    return folder

