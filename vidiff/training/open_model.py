"""What the diffusion task (diffusion.py) needs to fine-tune a diffusers-format open model (Wan):
`model: {pretrained: DIR}` in a `vidiff train` recipe, usually with `train.lora`. The loss is the
ordinary diffusion loss with the bundle's prediction ("flow"), schedule and shift, on the bundle's
backbone; this module builds that backbone (adapters, checkpointing, fp8 base, block swap) and the data.

Every clip of the folder (videos and images, in their aspect-ratio and frame buckets) is encoded once,
its VAE latents and its caption's text states, into a disk cache that later runs and resumes reuse
(latent_cache.py); the VAE and the text encoder are then dropped, so only the transformer is on the
device while it trains (with model.blocks_to_swap, not even all of it). A checkpoint holds only what
trains (the frozen base stays in the directory); a LoRA run also writes its adapter in diffusers' key
names (lora.safetensors, for `WanPipeline.load_lora_weights` and `vidiff generate --model DIR --lora
FILE`), as a peft adapter folder (peft/) and in ComfyUI's `diffusion_model.` keys (lora_comfy.safetensors).
"""
from __future__ import annotations

import gc
import zlib
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
from ..data.video_folder import DECODE_ERRORS, VideoFolderDataset
from ..diffusion import schedule_of
from ..distributed import barrier, current
from ..errors import VidiffError
from ..models.bundle import Bundle
from ..models.external import (family_of, load_open_backbone, load_open_bundle, open_clip_multiples,
                               open_lora_names)
from ..models.fp8 import store_fp8
from ..models.lora import LORA_NAME, adapter_layers, add_lora, save_lora, save_peft_adapter
from ..models.lora_files import write_lora
from ..pipeline import SampleOptions
from ..pipeline.sampling import sample_video
from .activation_offload import offloaded_checkpoint, require_grad_input
from .block_swap import place
from .objective import Objective
from .latent_cache import DiskCache, default_folder, file_digest, identity, key
from .plots import save_samples
from .run_folder import RunFolder


class EncodedClips:
    """The folder dataset's clips as latents and text states read from the disk cache: the same buckets
    and batch order as the folder (one bucket per batch), so host memory holds a batch, not the set."""

    def __init__(self, folder: VideoFolderDataset, keys: dict[str, tuple[str, str]], cache: DiskCache):
        self.folder, self.keys, self.cache = folder, keys, cache

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self.folder.skipped

    def __len__(self) -> int:
        return len(self.folder)

    def buckets(self):
        return self.folder.buckets()

    def cache_keys(self, batch: dict) -> list:
        return []

    def item(self, micro_index: int, position: int, batch_size: int) -> dict:
        entry = self.folder.entry(micro_index, position, batch_size)
        latents, text = self.keys[str(entry.path)]
        return {"latents": self.cache.get(latents), "context": self.cache.get(text), "caption": entry.caption,
                "path": str(entry.path)}


def encode_folder(bundle: Bundle, cfg: Config, device: torch.device) -> tuple[EncodedClips, Tensor]:
    """Every usable file of the folder (data.folder: its path and sources) through the VAE at its bucket
    and every caption through the text encoder, into the disk cache (data.folder.cache): what an
    earlier run or resume encoded is read, not encoded again, and the processes of a run each encode
    their share. Returns the clips and the empty prompt's states (caption dropout)."""
    if cfg.data.type != "folder":
        raise VidiffError("fine-tuning a pretrained model takes your own clips: data.type: folder (data.folder.path)")
    d = cfg.data
    time_factor, multiple = open_clip_multiples(cfg.model.pretrained)
    folder = build_dataset(replace(d, folder=replace(d.folder, fixed_clips=True)), multiple=multiple)
    folder.fit(multiple, time_factor)
    if not folder.entries:
        raise VidiffError(f"'{folder.sources[0].folder}' has no usable video or image; `vidiff data check FOLDER "
                          "--config RECIPE` says why each file is skipped")
    cache, dist = DiskCache(d.folder.cache or default_folder()), current()
    codec_id, text_id = identity(bundle.modules["codec"]), identity(bundle.modules["text"])
    keys = {}
    for entry in folder.entries:
        clip = (folder.bucket(entry), entry.stride, d.folder.crop, d.seed)
        keys[str(entry.path)] = (key("latents", file_digest(entry.path), str(entry.path), clip, codec_id),
                                 key("text", entry.caption, text_id))
    null_key = key("text", "", text_id)
    placed = False
    for i, entry in enumerate(folder.entries):
        latents, text = keys[str(entry.path)]
        if i % dist.world != dist.rank or (cache.get(latents) is not None and cache.get(text) is not None):
            continue
        if not placed:
            bundle.modules["codec"].to(device)
            bundle.modules["text"].to(device)
            placed = True
        try:          # the clip training would cut: fixed_clips' start and crop depend on (seed, file) alone
            video = folder.load(entry, np.random.default_rng([d.seed, zlib.crc32(str(entry.path).encode())]))
        except DECODE_ERRORS as e:          # it failed to decode: left out (every rank sees it missing)
            folder.skip(str(entry.path), f"decode failed: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}")
            continue
        cache.put(latents, bundle.codec.encode(video[None].to(device))[0])
        cache.put(text, bundle.encode([entry.caption], 1)[0][0].float())
    if dist.main and cache.get(null_key) is None:
        bundle.modules["text"].to(device)
        cache.put(null_key, bundle.encode([""], 1)[0][0].float())
    barrier(dist)                              # every share written before anyone reads
    missing = [e for e in folder.entries if not all(cache.path(k).is_file() for k in keys[str(e.path)])]
    if missing:
        for entry in missing:
            folder.readable.remove(entry)
        folder.set_multiple(multiple)
    if not folder.entries:
        raise VidiffError(f"no file of '{folder.sources[0].folder}' could be decoded")
    return EncodedClips(folder, keys, cache), cache.get(null_key)


def trained_expert(backbone: nn.Module, cfg: Config) -> tuple[nn.Module, nn.Module | None]:
    """(the transformer that trains, the expert that does not): train.expert of a two-expert model."""
    second, expert = getattr(backbone, "transformer_2", None), cfg.train.expert
    if second is None and expert:
        raise VidiffError(f"train.expert is {expert}, but '{cfg.model.pretrained}' has one transformer: remove train.expert")
    if second is not None and not expert:
        raise VidiffError(f"'{cfg.model.pretrained}' has two experts (transformer for the noisy steps, transformer_2 for "
                          "the rest): set train.expert: high or low (one run per expert, as such LoRAs are published)")
    if expert == "low":
        return second, backbone.transformer
    return backbone.transformer, second


def expert_times(backbone: nn.Module, expert: str, objective: Objective) -> tuple[float, float]:
    """The training times (0..1 of the schedule) on train.expert's side of the boundary: the high-noise
    expert's from the boundary up, the low-noise expert's below it; (0, 1) for a one-expert model."""
    if not expert:
        return 0.0, 1.0
    boundary = backbone.boundary / 1000            # Wan's timestep / 1000: the flow time s = sigma / (alpha + sigma)
    schedule = schedule_of(objective.schedule, objective.shift)
    lo, hi = 0.0, 1.0
    for _ in range(60):                            # bisect: the time whose s is the boundary (s grows with t)
        mid = (lo + hi) / 2
        s = float(torch.sigmoid(-schedule(torch.tensor([mid], dtype=torch.float64)) / 2))
        lo, hi = (mid, hi) if s < boundary else (lo, mid)
    return (hi, 1.0) if expert == "high" else (0.0, lo - 1e-6)


class OpenModel:
    """A pretrained directory's parts for the diffusion task: the backbone that trains (with train.lora's
    adapters), the encoded clips, the empty prompt's states, the sample prompts' states, the
    prediction / schedule / shift of its family, and its bundle's call in vidiff's log-SNR view."""

    def __init__(self, cfg: Config, device: torch.device):
        self.cfg, self.device = cfg, device
        self.model = self.new_model()          # the transformer, loaded once; on the host while the clips encode
        # the text encoder only encodes captions once: bf16 on a GPU (UMT5-XXL: 11 GB, not 23)
        text_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        bundle = load_open_bundle(cfg.model.pretrained, text_dtype, backbone=self.model)
        self.family = family_of(cfg.model.pretrained)
        call = bundle.call         # (not a closure over the bundle: the VAE and text encoder must go)
        self.objective = Objective(bundle.prediction, bundle.schedule, bundle.shift,
                                   lambda model, x, log_snr, context, frames: call(model, x, log_snr, context))
        self.dataset, self.null = encode_folder(bundle, cfg, device)
        # the sheet's prompts are encoded now, while the text encoder is loaded; only the VAE comes back for it
        self.sample_states = [bundle.encode([p], 1)[0][0].float().cpu() for p in cfg.train.sample_prompts]
        del bundle                   # the VAE and the text encoder leave memory before training starts
        gc.collect()
        trained, idle = trained_expert(self.model, cfg)
        self.objective = replace(self.objective, times=expert_times(self.model, cfg.train.expert, self.objective))
        blocks, swap = list(trained.blocks), cfg.model.blocks_to_swap
        if swap > len(blocks):
            raise VidiffError(f"model.blocks_to_swap is {swap}; this transformer has {len(blocks)} blocks")
        if cfg.model.fp8_base:
            store_fp8(blocks)
        # all on the device but the swapped blocks and an expert that does not train (it never runs)
        self.swap = place(self.model, blocks, swap, device, host=idle)

    def new_model(self) -> nn.Module:
        backbone = load_open_backbone(self.cfg.model.pretrained)
        trained, _ = trained_expert(backbone, self.cfg)
        if self.cfg.model.pretrained_checkpointing:
            offload = self.cfg.model.offload_activations
            trained.enable_gradient_checkpointing(offloaded_checkpoint if offload else None)
            if offload:
                require_grad_input(trained.patch_embedding)
        lora = self.cfg.train.lora
        if not lora.rank:
            trained.requires_grad_(True)
        else:
            add_lora(trained, LORA_NAME, lora.rank, lora.alpha or lora.rank, open_lora_targets(self.cfg))
        return backbone

    def write_samples(self, model: nn.Module, run: RunFolder, step: int, progress: bool) -> None:
        """train.sample_prompts with the run's weights, at the run's clip size, into a sheet: the VAE is
        loaded for it and dropped after (the prompts were encoded at the start). None without prompts."""
        prompts, t, d = self.cfg.train.sample_prompts, self.cfg.train, self.cfg.data
        if not prompts:
            return
        start = perf_counter()
        bundle = load_open_bundle(self.cfg.model.pretrained, backbone=model, text_encoder=False)
        bundle.codec.module.to(self.device)
        o = SampleOptions(t.sample_steps or None, None if t.sample_guidance < 0 else t.sample_guidance,
                          progress=progress).resolved(bundle)
        o = o if t.sample_steps else replace(o, steps=min(o.steps, max(2, t.steps)))   # no more sheet than training
        cond = (torch.stack(self.sample_states).to(self.device),)
        null = (self.null[None].expand(len(prompts), -1, -1).to(self.device),)
        with torch.no_grad():
            x = sample_video(bundle, cond, null, bundle.codec.shape(d.frames, d.size, d.size), o,
                             torch.Generator().manual_seed(t.seed))
            path = save_samples(bundle.codec.decode(x), prompts, run.path / "samples", step)
        del bundle
        gc.collect()
        if progress:
            tqdm.write(f"sample sheet {path}: {len(prompts)} videos, {o.steps} steps, {perf_counter() - start:.1f} s")

    def save_adapter(self, model: nn.Module, folder: Path) -> None:
        """The trained expert's adapter in diffusers' `transformer.` keys (Wan 2.2's low-noise expert: load
        it with `load_lora_weights(..., load_into_transformer_2=True)` or `vidiff generate --lora-2`)."""
        (transformer, _), targets = trained_expert(model, self.cfg), open_lora_targets(self.cfg)
        save_lora(transformer, LORA_NAME, folder / "lora.safetensors", targets, prefix="transformer.")
        save_peft_adapter(transformer, LORA_NAME, folder / "peft", targets)
        write_lora(adapter_layers(transformer, LORA_NAME), folder / "lora_comfy.safetensors", "comfy",
                   open_lora_names(self.cfg.model.pretrained))


def export_transformer(source: str | Path, folder: str | Path, merge_lora: bool = False) -> Path:
    """A fine-tune of a pretrained model as the library's own transformer folder (diffusers'
    save_pretrained; `WanTransformer3DModel.from_pretrained(folder)` loads it): the run's EMA weights,
    a LoRA run's adapter folded in with merge_lora."""
    from ..checkpoint import load_open_run_backbone, read_config, resolve_checkpoint, trained_transformer
    from ..models.lora import merge_lora as fold
    checkpoint, folder = resolve_checkpoint(source), Path(folder)
    cfg = read_config(checkpoint)
    if folder.exists():
        raise VidiffError(f"'{folder}' already exists; it is never overwritten (choose another folder)")
    if bool(cfg.train.lora.rank) != merge_lora:
        raise VidiffError(f"'{checkpoint}' is a LoRA run: pass --merge-lora for a full transformer, or use its adapter "
                          f"'{checkpoint / 'lora.safetensors'}' with `vidiff generate --lora`" if cfg.train.lora.rank
                          else f"'{checkpoint}' has no LoRA adapter to merge (it was not trained with train.lora)")
    expert = trained_transformer(load_open_run_backbone(checkpoint, cfg), cfg)    # the one the run trained
    fold(expert)
    expert.save_pretrained(str(folder))
    return folder

