"""Checkpoints are folders: config.json + model.safetensors (+ ema.safetensors, optimizer.pt,
state.json while training; + vae.safetensors for a latent model). Folders are written under a
temporary name, fsynced and renamed, so a crash mid-write leaves the previous checkpoints intact and
never a half-written one. Here too: reading configs (old layouts upgraded), loading weights with a
one-line diagnosis of mismatches, loading a model, a VAE or a latent codec, and export.

Values a run derives rather than is given (a latent model's VAE architecture and latent scale) are
stored with the weights they belong to, in vae.safetensors' metadata, not in config.json.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .config import Config, LoRAConfig, VAEConfig, build_section, config_from_dict
from .errors import VidiffError
from .models import LatentCodec, TextToVideoModel, VideoVAE, build_model, build_vae
from .models.lora import merge_lora as fold_lora

FORMAT = "vidiff-checkpoint-1"
DEFAULT_MODEL = Path(__file__).parent / "assets" / "default"   # the embedded model; `default` names it


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
                     model_type: str | None = None, extra: dict[str, StateLike] | None = None,
                     extra_metadata: dict[str, dict[str, str]] | None = None) -> Path:
    """Atomically create `folder`; refuses to replace an existing one. Weights and optimizer state
    may be given as modules/optimizers or as (full, gathered) state dicts."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise VidiffError(f"'{folder}' is an existing file, not a checkpoint folder; give a new folder name")
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
        metadata = {"format": FORMAT, "model_type": name, **(extra_metadata or {}).get(name, {})}
        save_file(_state_tensors(weights), tmp / f"{name}.safetensors", metadata=metadata)
    if optimizer is not None:
        torch.save(optimizer if isinstance(optimizer, dict) else optimizer.state_dict(), tmp / "optimizer.pt")
    if state is not None:
        (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    mode = 0o666 & ~_umask()             # safetensors writes 0600; a checkpoint is as readable as any other file
    for f in tmp.iterdir():
        os.chmod(f, mode)
        _fsync(f)
    os.rename(tmp, folder)
    _fsync(folder.parent)
    return folder


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_pointer(run_dir: Path, name: str) -> None:
    """Point run_dir/latest at a checkpoint folder name (atomic replace)."""
    tmp = run_dir / ".latest.tmp"
    tmp.write_text(name + "\n")
    _fsync(tmp)
    os.replace(tmp, run_dir / "latest")


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, a run folder whose `latest` names one, or `default` (the embedded model)."""
    path = DEFAULT_MODEL if str(path) == "default" else Path(path)
    if (path / "latest").is_file():
        path = path / "checkpoints" / (path / "latest").read_text().strip()
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise VidiffError(f"'{path}' is not a vidiff checkpoint (needs config.json and model.safetensors) nor a "
                          "diffusers-format model directory (needs model_index.json and its component folders)")
    return path


# config.json keys of the flat layout (before per-backbone and per-source sub-sections)
_LEGACY_MODEL = {"unet3d": ("base_channels", "channel_mults", "num_res_blocks", "attention_levels", "groups"),
                 "dit": ("width", "depth", "patch", "attention", "activation_checkpointing")}
_LEGACY_DATA = {"shapes": ("min_objects", "max_objects", "colours", "shapes", "radius", "speed", "gravity",
                           "num_clips"),
                "folder": ("path", "frame_stride", "fps", "crop", "image_every", "fixed_clips")}


def _merge(section: dict, name: str, moved: dict, where: str) -> None:
    """Flat keys `moved` into section[name], key by key; a key set both ways with two values is an error."""
    sub = section.setdefault(name, {})
    if not isinstance(sub, dict):
        raise VidiffError(f"config section '{where}.{name}' must be a mapping, got {type(sub).__name__}")
    for key, value in moved.items():
        if key in sub and sub[key] != value:
            raise VidiffError(f"config key '{where}.{key}' is given twice, flat ({value!r}) and in '{where}.{name}' "
                              f"({sub[key]!r}); keep the one in '{where}.{name}'")
        sub[key] = value


def upgrade_config_dict(values: dict) -> dict:
    """A config.json of an older layout in today's: flat backbone and data-source keys move into their
    sub-sections, key by key (a file that mixes both layouts keeps every setting), and derived values
    (diffusion.space, vae.latent_scale) are dropped (they now live with the weights; see load_codec)."""
    values = json.loads(json.dumps(values))   # a deep copy
    model, data = values.get("model", {}), values.get("data", {})
    flat = lambda k: k in data and not isinstance(data[k], dict)    # `shapes` is also today's sub-section
    if isinstance(data, dict) and any(flat(k) for keys in _LEGACY_DATA.values() for k in keys):
        for source, keys in _LEGACY_DATA.items():
            moved = {k: data.pop(k) for k in keys if flat(k)}
            if source == data.get("type", "shapes") and moved:
                _merge(data, source, moved, "data")
    if isinstance(model, dict) and any(k in model for keys in _LEGACY_MODEL.values() for k in keys):
        chosen = model.get("type", "unet3d")
        moved = {k: model.pop(k) for keys in _LEGACY_MODEL.values() for k in keys if k in model}
        sub = model.get(chosen) if isinstance(model.get(chosen), dict) else {}
        if "head_dim" in model or "head_dim" not in sub:     # the flat layout's head_dim, shared by both backbones
            moved["head_dim"] = model.pop("head_dim", 32)
        _merge(model, chosen, {k: v for k, v in moved.items() if k in _LEGACY_MODEL[chosen] + ("head_dim",)}, "model")
    if isinstance(values.get("diffusion"), dict):
        values["diffusion"].pop("space", None)
    if isinstance(values.get("vae"), dict):
        values["vae"].pop("latent_scale", None)
    return values


def read_config(folder: Path) -> Config:
    try:
        values = json.loads((folder / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise VidiffError(f"'{folder / 'config.json'}' is not valid JSON: {e}") from None
    return config_from_dict(upgrade_config_dict(values))


def _metadata(file: Path) -> dict:
    try:
        with safe_open(file, "pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise VidiffError(f"cannot read weights '{file}': {e}") from None


def load_weights(module: nn.Module, file: Path, model_type: str, allow_new: bool = False) -> list[str]:
    """Load safetensors weights, with a one-line error for files from another model or architecture.
    allow_new: parameters of the module that the file lacks keep their values (returned by name),
    e.g. the zero-initialised layers a model gains over the checkpoint it starts from."""
    meta = _metadata(file)
    if meta.get("model_type", model_type) != model_type:
        raise VidiffError(f"weights '{file}' are for a '{meta['model_type']}' model, not a '{model_type}'; "
                          "use the config.json saved with them, or the right kind of checkpoint")
    try:
        tensors = load_file(file)
    except (SafetensorError, OSError) as e:
        raise VidiffError(f"cannot read weights '{file}': {e}") from None
    expected = module.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    new, missing = (missing, []) if allow_new else ([], missing)
    if missing or unexpected or wrong:
        what = (f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'" if unexpected
                else f"'{wrong[0]}' has shape {tuple(tensors[wrong[0]].shape)}, "
                     f"expected {tuple(expected[wrong[0]].shape)}")
        raise VidiffError(f"weights '{file}' do not fit the model in its config.json ({what}); "
                          "the checkpoint comes from another architecture or size")
    module.load_state_dict(tensors, strict=not allow_new)
    return new


def initialize_from(module: nn.Module, source: str | Path, model_type: str) -> list[str]:
    """train.init_from: load a checkpoint's weights (EMA when it has them) into a new model of the same
    or a larger architecture; returns the names of the parameters it added (which keep their init)."""
    folder = resolve_checkpoint(source)
    if model_type == VAE_TYPE and (folder / "vae.safetensors").is_file():   # the VAE inside a latent model
        return load_weights(module, folder / "vae.safetensors", model_type, allow_new=True)
    weights = folder / "ema.safetensors"
    return load_weights(module, weights if weights.is_file() else folder / "model.safetensors", model_type,
                        allow_new=True)


def load_model(path: str | Path, ema: bool = True) -> tuple[TextToVideoModel, Config, Path]:
    """The text-to-video model of a checkpoint or run folder (its EMA weights when there are any)."""
    folder = resolve_checkpoint(path)
    config = read_config(folder)
    model = build_model(config.model, config.trained_words(), config.train.lora)   # a LoRA run's: with its adapter
    weights = folder / "ema.safetensors"
    load_weights(model, weights if ema and weights.is_file() else folder / "model.safetensors", config.model.type)
    return model, config, folder


VAE_TYPE = "vae"


def vae_metadata(cfg: VAEConfig, latent_scale: float) -> dict[str, str]:
    """What a latent model's vae.safetensors carries to rebuild its codec."""
    return {"config": json.dumps(dataclasses.asdict(cfg)), "latent_scale": repr(latent_scale)}


def load_vae(path: str | Path, device: str | torch.device = "cpu") -> tuple[VideoVAE, Config]:
    """A trained VAE from a `vidiff train-vae` run or checkpoint folder (its EMA weights when there are
    any), or the VAE inside a latent diffusion model."""
    folder = resolve_checkpoint(path)
    cfg = read_config(folder)
    if (folder / "vae.safetensors").is_file():
        codec = load_codec(folder, device)
        return codec.vae, dataclasses.replace(cfg, vae=codec.config)
    vae = build_vae(cfg.vae)
    weights = folder / "ema.safetensors"
    load_weights(vae, weights if weights.is_file() else folder / "model.safetensors", VAE_TYPE)
    return vae.to(device).eval(), cfg


def load_codec(folder: Path, device: str | torch.device = "cpu") -> LatentCodec:
    """The pixel<->latent codec a diffusion checkpoint was trained with: the identity for a pixel model,
    else the VAE stored beside its weights (architecture and latent scale in that file's metadata;
    checkpoints written before that kept both in config.json)."""
    file = folder / "vae.safetensors"
    if not file.is_file():
        return LatentCodec()
    meta = _metadata(file)
    if "config" in meta:
        vae_cfg, scale = build_section(VAEConfig, json.loads(meta["config"]), "vae."), float(meta["latent_scale"])
    else:
        legacy = json.loads((folder / "config.json").read_text()).get("vae", {})
        scale = float(legacy.pop("latent_scale", 1.0))
        vae_cfg = build_section(VAEConfig, legacy, "vae.")
    vae = build_vae(vae_cfg)
    load_weights(vae, file, VAE_TYPE)
    return LatentCodec(vae.to(device).eval().requires_grad_(False), scale, config=vae_cfg)


def export_pretrained(source: str | Path, folder: str | Path, vae: str | Path | None = None,
                      merge_lora: bool = False) -> Path:
    """Write an inference-only checkpoint (config.json + the EMA weights as model.safetensors, + the VAE).
    vae: a VAE to decode with instead of the model's own, whose encoder must be the model's, weight for
    weight (a decoder fine-tune: the latents keep their meaning and scale). merge_lora: a LoRA run's
    adapter folded into the weights (a plain model; the adapter alone is the run's lora.safetensors)."""
    model, config, source = load_model(source)
    if config.train.lora.rank:
        if not merge_lora:
            raise VidiffError(f"'{source}' is a LoRA run: pass --merge-lora for a full model, or use its adapter "
                              f"'{source / 'lora.safetensors'}' with `vidiff generate --lora`")
        fold_lora(model)
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, lora=LoRAConfig()))
    elif merge_lora:
        raise VidiffError(f"'{source}' has no LoRA adapter to merge (it was not trained with train.lora)")
    codec = load_codec(source)          # also upgrades a VAE stored before its metadata carried config and scale
    if vae is not None:
        codec = swap_decoder(codec, vae)
        config = dataclasses.replace(config, vae=codec.config)
    extra = {"vae": codec.vae} if codec.latent else None
    meta = {"vae": vae_metadata(codec.config, codec.scale)} if codec.latent else None
    return write_checkpoint(folder, config, model, extra=extra, extra_metadata=meta)


def swap_decoder(codec: LatentCodec, path: str | Path) -> LatentCodec:
    """The codec with the decoder of the VAE at `path`, whose encoder must equal the codec's exactly."""
    if not codec.latent:
        raise VidiffError("--vae needs a latent model; this one works in pixels")
    new, cfg = load_vae(path)
    old_state, new_state = codec.vae.encoder.state_dict(), new.encoder.state_dict()
    same = old_state.keys() == new_state.keys() and all(
        old_state[k].shape == new_state[k].shape and torch.equal(old_state[k], new_state[k]) for k in old_state)
    shape = ("in_channels", "channels", "channel_mults", "latent_channels", "temporal_downsample")
    if not same or any(getattr(codec.config, k) != getattr(cfg.vae, k) for k in shape):
        raise VidiffError(f"the VAE in '{path}' has another encoder than the model's: its latents would mean "
                          "something else (train it with train.init_from the model and train.trainable 'decoder.*')")
    return LatentCodec(new, codec.scale, codec.tile, cfg.vae)   # its loss weights now describe the decoder


# train.lora's targets for a pretrained model when the recipe keeps vidiff's defaults: the attention
# projections of every block, the layers finetrainers and musubi-tuner adapt in Wan
OPEN_LORA_TARGETS = ["*.attn1.to_q", "*.attn1.to_k", "*.attn1.to_v", "*.attn1.to_out.0",
                     "*.attn2.to_q", "*.attn2.to_k", "*.attn2.to_v", "*.attn2.to_out.0"]


def open_lora_targets(cfg: Config) -> list[str]:
    targets = cfg.train.lora.targets
    return OPEN_LORA_TARGETS if targets == LoRAConfig().targets else targets


def open_run(path: str | Path) -> tuple[Path, Config] | None:
    """(checkpoint, config) of a fine-tune of a diffusers-format model (model.pretrained), else None."""
    if not Path(path).is_dir() or not ((Path(path) / "latest").is_file() or (Path(path) / "config.json").is_file()):
        return None
    checkpoint = resolve_checkpoint(path)
    cfg = read_config(checkpoint)
    return (checkpoint, cfg) if cfg.model.pretrained else None


def clip_multiple(cfg: Config) -> int:
    """What a recipe's model needs each side of a clip to be a multiple of, from configs alone: a
    pretrained directory's VAE factor times its patch, or vidiff's backbone's times its VAE's."""
    if cfg.model.pretrained:
        from .models.external import open_clip_multiples
        return open_clip_multiples(cfg.model.pretrained)[1]
    from .models import input_multiples
    factor = read_config(resolve_checkpoint(cfg.train.vae)).vae.spatial_factor() if cfg.train.vae else 1
    return factor * input_multiples(cfg.model)[1]


def trained_transformer(backbone: nn.Module, cfg: Config) -> nn.Module:
    return backbone.transformer_2 if cfg.train.expert == "low" else backbone.transformer


def load_open_run_backbone(checkpoint: Path, cfg: Config, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The base directory's transformer with the run's EMA weights: its adapter (a LoRA run), or every
    weight (a full fine-tune)."""
    from .models.external import family_of, load_open_backbone
    from .models.lora import LORA_NAME, add_lora
    backbone = load_open_backbone(cfg.model.pretrained, dtype)
    lora = cfg.train.lora
    if lora.rank:          # on the expert it trained (train.expert: low is Wan 2.2's transformer_2)
        add_lora(trained_transformer(backbone, cfg), LORA_NAME, lora.rank, lora.alpha or lora.rank, open_lora_targets(cfg))
    weights = checkpoint / "ema.safetensors"
    load_weights(backbone, weights if weights.is_file() else checkpoint / "model.safetensors",
                 family_of(cfg.model.pretrained), allow_new=True)
    return backbone.to(dtype)
