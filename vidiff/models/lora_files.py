"""LoRA files in the formats people download, read into one form, and written back out.

The formats differ only in names and in where the scale alpha / r lives:
- diffusers (`transformer.<module>.lora_A.weight`, `lora_B`), peft (`base_model.model.<module>...`): alpha in
  the metadata or an adapter_config.json beside the file, or alpha = r (diffusers folds it into B);
- ComfyUI and the original model code (`diffusion_model.<original module>.lora_down.weight` / `lora_up`, or
  `lora_A` / `lora_B`, a `.alpha` per layer), as musubi-tuner, diffusion-pipe and ai-toolkit write them;
- kohya / musubi-tuner (`lora_unet_<original module with _ for .>.lora_down.weight`, `.alpha`).
Distilled LoRAs add `diff_b` (a bias difference) and `diff` (a full weight difference) keys.

A family names its modules' original names (Bundle.lora_names), so any file maps onto its modules;
a key that maps onto none is an error, never dropped (except a difference of exactly zero, which
changes nothing: the norm `diff`s distilled files carry).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from ..errors import VidiffError

PREFIXES = ("transformer.", "base_model.model.", "model.diffusion_model.", "diffusion_model.", "lora_unet_", "unet.")
TEXT_PREFIXES = ("text_encoder.", "text_encoder_2.", "lora_te_", "lora_te1_", "lora_te2_", "text_encoders.")
# key ending -> the field of Layer it fills
SUFFIXES = {".lora_A.weight": "down", ".lora_down.weight": "down", ".lora_B.weight": "up", ".lora_up.weight": "up",
            ".alpha": "alpha", ".diff_b": "bias", ".lora_B.bias": "lora_bias", ".lora_up.bias": "lora_bias", ".diff": "diff",
            ".lora_magnitude_vector": "dora", ".lora_magnitude_vector.weight": "dora"}
FORMATS = ("diffusers", "peft", "comfy")


@dataclass
class Layer:
    """One layer's adapter: y += scale (alpha / r B A x + diff x + bias)."""
    down: Tensor | None = None         # A: (r, in, ...)
    up: Tensor | None = None           # B: (out, r, ...)
    alpha: float | None = None         # None: rank (no scaling)
    bias: Tensor | None = None         # (out,): diff_b, or peft's lora_B bias with its alpha / r folded in
    diff: Tensor | None = None         # the base weight's shape
    dora: Tensor | None = None
    lora_bias: Tensor | None = None    # peft's lora_B bias as read (scaled like B; folded into bias)

    @property
    def rank(self) -> int:
        return 0 if self.down is None else self.down.shape[0]


def aliases(names: dict[str, str]) -> dict[str, str]:
    """Every name a file may use for a module -> the module's name. names: module -> its original name
    (the family's own code's, as ComfyUI and musubi-tuner use it); kohya's form writes '_' for '.'."""
    out = {}
    for module, original in names.items():
        for alias in (module, original):
            out[alias] = out[alias.replace(".", "_")] = module
    return out


def _split(key: str) -> tuple[str, str] | None:
    for suffix, field in SUFFIXES.items():
        if key.endswith(suffix):
            return key[:-len(suffix)], field
    return None


def _strip(key: str) -> str:
    return next((key[len(p):] for p in PREFIXES if key.startswith(p)), key)


def _config(meta: dict, path: Path) -> dict:
    """The adapter's peft-style config: vidiff's metadata, diffusers' lora_adapter_metadata, or a peft
    adapter_config.json beside the file; {} when none (alpha = rank, as diffusers takes it)."""
    if "r" in meta:
        return {"r": int(meta["r"]), "lora_alpha": float(meta["lora_alpha"])}
    if "lora_adapter_metadata" in meta:
        return {k.rsplit(".", 1)[-1] if k.startswith("transformer.") else k: v
                for k, v in json.loads(meta["lora_adapter_metadata"]).items()}
    peft_config = path.with_name("adapter_config.json")
    return json.loads(peft_config.read_text()) if peft_config.is_file() else {}


def _pattern(patterns: dict, module: str, default):
    return next((v for k, v in (patterns or {}).items() if module == k or module.endswith("." + k)), default)


def read_lora(path: Path, names: dict[str, str] | None, modules: set[str] | None = None
              ) -> tuple[dict[str, Layer], dict[str, str]]:
    """(module name -> Layer, the file's metadata) for a LoRA file in any of the formats above.
    names: the family's module -> original names (None: the model's own names only); modules: the
    model's module names when no family names are given. The alpha / r scale and rslora are folded
    into each Layer's alpha; DoRA and text-encoder keys are one-line errors."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        config = _config(meta, path)
    except (ValueError, OSError, RuntimeError, SafetensorError) as e:
        raise VidiffError(f"'{path}' is not a LoRA adapter file ({type(e).__name__}: {e})") from None
    text = [k for k in tensors if k.startswith(TEXT_PREFIXES)]
    if text:
        raise VidiffError(f"'{path.name}' also adapts the text encoder ({len(text)} keys such as '{text[0]}'); "
                          "vidiff applies LoRAs to the video model only")
    table = aliases(names) if names is not None else {m: m for m in modules or ()}
    layers: dict[str, Layer] = {}
    for key, tensor in tensors.items():
        split = _split(_strip(key))
        if split is None:
            raise VidiffError(f"'{path.name}' has a key vidiff cannot place: '{key}' (not a LoRA weight, alpha or "
                              "diff key)")
        name, field = split
        if field in ("diff", "bias", "lora_bias") and not tensor.any():
            continue                           # an all-zero difference (distilled files' norms): changes nothing
        module = table.get(name, name if names is None and modules is None else None)
        if module is None:
            raise VidiffError(f"LoRA adapter '{path.name}' was made for another base model: it adapts '{name}', "
                              "which this model does not have")
        layer = layers.setdefault(module, Layer())
        setattr(layer, field, tensor.item() if field == "alpha" else tensor)
    if config.get("use_dora") or any(layer.dora is not None for layer in layers.values()):
        raise VidiffError(f"'{path.name}' is a DoRA adapter (weight-decomposed, with magnitude vectors); vidiff "
                          "applies LoRA only")
    for module, layer in layers.items():
        if (layer.down is None) != (layer.up is None):
            raise VidiffError(f"'{path.name}' has half a LoRA pair for '{module}' (lora_A/down without lora_B/up)")
        if layer.rank:
            alpha = layer.alpha if layer.alpha is not None else \
                _pattern(config.get("alpha_pattern"), module, config.get("lora_alpha") or layer.rank)
            if config.get("use_rslora"):                # peft's rank-stabilised scale alpha / sqrt(r)
                alpha = alpha * layer.rank ** 0.5
            if layer.lora_bias is not None:             # peft scales lora_B's bias with lora_B
                folded = layer.lora_bias * (alpha / layer.rank)
                layer.bias, layer.lora_bias = folded if layer.bias is None else layer.bias + folded, None
            layer.alpha = float(alpha)
        elif layer.lora_bias is not None:
            raise VidiffError(f"'{path.name}' has a lora_B bias without lora_B for '{module}'")
    return layers, meta


# writing ------------------------------------------------------------------------------------------------
def atomic_save(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str]) -> Path:
    import os
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)                         # safetensors writes 0600; as readable as any other file
    tmp.replace(path)                                     # atomic: a crash never leaves half a file
    return path


def write_lora(layers: dict[str, Layer], path: str | Path, fmt: str, names: dict[str, str] | None = None,
               metadata: dict[str, str] | None = None) -> Path:
    """Write `layers` as one file. diffusers / peft: alpha / r folded into B (so alpha = r, what a loader
    that reads no alpha assumes), biases as lora_B.bias; comfy: `diffusion_model.<original name>` with
    lora_down / lora_up, a per-layer alpha and diff_b / diff (names: module -> original name)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise VidiffError(f"unknown LoRA format '{fmt}'; choose one of {', '.join(FORMATS)}")
    tensors: dict[str, Tensor] = {}
    for module, layer in layers.items():
        if fmt == "comfy":
            if names is None:
                raise VidiffError("the comfy format needs a model family's original module names (an open model)")
            key = f"diffusion_model.{names.get(module, module)}"
            if layer.rank:
                tensors[f"{key}.lora_down.weight"], tensors[f"{key}.lora_up.weight"] = layer.down, layer.up
                tensors[f"{key}.alpha"] = torch.tensor(float(layer.alpha or layer.rank))
            for field, suffix in (("bias", "diff_b"), ("diff", "diff")):
                if getattr(layer, field) is not None:
                    tensors[f"{key}.{suffix}"] = getattr(layer, field)
            continue
        if layer.diff is not None:
            raise VidiffError(f"the {fmt} format has no full weight differences ('diff', on '{module}'); write "
                              "it as comfy")
        key = ("transformer." if fmt == "diffusers" else "base_model.model.") + module
        if layer.rank:
            tensors[f"{key}.lora_A.weight"] = layer.down
            tensors[f"{key}.lora_B.weight"] = layer.up.float() * ((layer.alpha or layer.rank) / layer.rank)
        if layer.bias is not None:
            if not layer.rank:
                raise VidiffError(f"the {fmt} format has no bias without a LoRA pair ('{module}'); write it as comfy")
            tensors[f"{key}.lora_B.bias"] = layer.bias
    ranks = {layer.rank for layer in layers.values() if layer.rank}
    meta = {"format": "pt", **(metadata or {})}
    if fmt != "comfy" and len(ranks) == 1:
        meta.setdefault("r", str(ranks.pop()))
        meta["lora_alpha"] = meta["r"]
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "peft":
        _peft_config(layers, path.parent)
    return atomic_save(tensors, path, meta)


def _peft_config(layers: dict[str, Layer], folder: Path) -> None:
    """adapter_config.json for a peft folder: alpha = r everywhere (folded into B), ranks per layer."""
    from collections import Counter

    from peft import LoraConfig
    ranks = {m: layer.rank for m, layer in layers.items() if layer.rank}
    r = Counter(ranks.values()).most_common(1)[0][0]
    other = {m: k for m, k in ranks.items() if k != r}
    LoraConfig(r=r, lora_alpha=r, target_modules=sorted(ranks), rank_pattern=other, alpha_pattern=other,
               lora_bias=any(layer.bias is not None for layer in layers.values())).save_pretrained(str(folder))


def convert_lora(source: str | Path, out: str | Path, fmt: str, names: dict[str, str], overwrite: bool = False) -> Path:
    """Rewrite a LoRA file (any format read_lora reads) as `fmt`: a comfy or diffusers .safetensors file,
    or a peft adapter folder. Weights are the same to float32 rounding; an existing output is kept
    unless overwrite."""
    source, out = Path(source), Path(out)
    if fmt not in FORMATS:
        raise VidiffError(f"unknown LoRA format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if not source.is_file():
        candidates = [source / "adapter_model.safetensors", source / "lora.safetensors"]
        source = next((c for c in candidates if c.is_file()), source)
        if not source.is_file():
            raise VidiffError(f"LoRA adapter '{source}' not found")
    if out.exists() and not overwrite:
        raise VidiffError(f"'{out}' exists; pass --overwrite to replace it")
    layers, _ = read_lora(source, names)
    if not layers:
        raise VidiffError(f"'{source}' holds no LoRA weights")
    return write_lora(layers, out / "adapter_model.safetensors" if fmt == "peft" else out, fmt, names)
