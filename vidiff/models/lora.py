"""LoRA adapters (Hu et al. 2021): a frozen linear layer W gains a low-rank update, y = W x + s (alpha/r) B A x,
with A (r x in) and B (out x r), B starting at zero so an adapter changes nothing until trained; a
convolution gains A as a convolution to r channels and B as a 1x1 one (peft's LoRA for convolutions).

Adapters live on the layer they adapt (`layer.lora[name]`) and act through a forward hook, so the
base model's parameter names, and so its checkpoints, stay as they are. Several adapters may stack,
each with its own scale. A file holds one adapter in the key naming of peft and diffusers
(`base_model.model.<module>.lora_A.weight`, `... .lora_B.weight`), with its rank, alpha and targets
in the safetensors metadata, and a probe of the base weights it was trained on, so that an adapter
for another base model is refused instead of silently applied.
"""
from __future__ import annotations

import json
import os
import re
from fnmatch import fnmatch
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from ..errors import VidiffError

LORA_NAME = "default"   # the adapter a `train.lora` run trains (peft's default adapter name)
PREFIX = "base_model.model."
PROBE = 8              # base weights per adapted layer kept in a file to recognise its base model
PROBE_TOLERANCE = 2e-2  # relative: a model cast to bf16 or fp16 is still the same base


class Adapter(nn.Module):
    """One adapter on one layer: a linear layer, or a convolution (down: the base's kernel to `rank`
    channels, up: 1x1, as peft does for convolutions)."""

    def __init__(self, base: nn.Module, rank: int, alpha: float, scale: float = 1.0):
        super().__init__()
        if isinstance(base, nn.Linear):
            self.down = nn.Linear(base.in_features, rank, bias=False)     # A: peft's kaiming-uniform init
            self.up = nn.Linear(rank, base.out_features, bias=False)      # B: zero, so it starts as identity
        else:
            conv = type(base)               # its own class: the U-Net's convolutions run on their own layouts
            self.down = conv(base.in_channels, rank, base.kernel_size, base.stride, base.padding, base.dilation,
                             bias=False)
            self.up = conv(rank, base.out_channels, 1, bias=False)
        nn.init.zeros_(self.up.weight)
        self.down.to(base.weight.device, base.weight.dtype)
        self.up.to(base.weight.device, base.weight.dtype)
        self.rank, self.alpha, self.scale = rank, alpha, scale

    def delta(self, x: Tensor, *rest) -> Tensor:
        """rest: the base layer's other inputs (a temporal convolution's frame count)."""
        return self.up(self.down(x, *rest), *rest) * (self.scale * self.alpha / self.rank)

    def weight(self, like: Tensor) -> Tensor:
        """The adapter as a dense update of the base weight `like`."""
        return ((self.up.weight.flatten(1) @ self.down.weight.flatten(1)) * (self.scale * self.alpha / self.rank)
                ).reshape(like.shape).to(like.dtype)


ADAPTABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)   # and their subclasses (the U-Net's own convolutions)


def adaptable(m: nn.Module) -> bool:
    return isinstance(m, ADAPTABLE) and getattr(m, "groups", 1) == 1


def _hook(layer: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
    for adapter in layer.lora.values():
        output = output + adapter.delta(*inputs)
    return output


def expand_targets(model: nn.Module, targets: list[str]) -> list[str]:
    """Glob patterns over module names; `temporal` stands for the backbone's frame-mixing layers
    (AnimateDiff's motion LoRA)."""
    out = []
    for target in targets:
        if target == "temporal":
            temporal = getattr(getattr(model, "backbone", model), "TEMPORAL", None)
            if temporal is None:
                raise VidiffError("LoRA target 'temporal' needs a backbone with temporal layers (unet3d, dit)")
            out += [f"backbone.{p.rstrip('.*')}*" if hasattr(model, "backbone") else p.rstrip(".*") + "*" for p in temporal]
        else:
            out.append(target)
    return out


def target_layers(model: nn.Module, targets: list[str]) -> dict[str, nn.Module]:
    """The linear and convolution layers whose names match a target glob."""
    patterns = expand_targets(model, targets)
    layers = {name: m for name, m in model.named_modules()        # never an adapter's own layers
              if adaptable(m) and ".lora." not in name and any(fnmatch(name, p) for p in patterns)}
    if not layers:
        example = next(n for n, m in model.named_modules() if isinstance(m, nn.Linear))
        raise VidiffError(f"LoRA targets {targets} match no linear or convolution layer; names look like '{example}'")
    return layers


def add_recipe_lora(model: nn.Module, lora) -> list[str]:
    """The adapter a recipe's train.lora (a config.LoRAConfig) describes, LORA_NAME, empty until trained
    or loaded; none at rank 0. Returns the adapted layer names."""
    return add_lora(model, LORA_NAME, lora.rank, lora.alpha or lora.rank, lora.targets) if lora.rank else []


def add_lora(model: nn.Module, name: str, rank: int, alpha: float, targets: list[str], scale: float = 1.0) -> list[str]:
    """Give every targeted layer an adapter `name`; returns the adapted layer names."""
    layers = target_layers(model, targets)
    for layer in layers.values():
        if not hasattr(layer, "lora"):
            layer.lora = nn.ModuleDict()
            layer.register_forward_hook(_hook)
        if name in layer.lora:
            raise VidiffError(f"the model already has a LoRA adapter named '{name}'")
        layer.lora[name] = Adapter(layer, rank, alpha, scale)
    return sorted(layers)


def adapted(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if adaptable(m) and getattr(m, "lora", None)}


def adapter_names(model: nn.Module) -> list[str]:
    return sorted({a for m in adapted(model).values() for a in m.lora})


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its base weight (W += s alpha/r B A) and remove it: a plain model that
    computes what the adapted one did. Returns the number of layers changed."""
    layers = adapted(model)
    with torch.no_grad():
        for layer in layers.values():
            for adapter in layer.lora.values():
                layer.weight += adapter.weight(layer.weight)
            layer.lora = nn.ModuleDict()
    return len(layers)


def probe(layer: nn.Module) -> list[float]:
    return layer.weight.detach().flatten()[:PROBE].float().cpu().tolist()


def save_lora(model: nn.Module, name: str, path: str | Path, targets: list[str], prefix: str = PREFIX) -> Path:
    """Adapter `name` as a safetensors file, keys `<prefix><module>.lora_A.weight` (peft's naming by
    default; diffusers' is `transformer.`). alpha / r is folded into B, so the file holds alpha = r:
    a loader that reads no alpha (diffusers infers r from the shapes and takes alpha = r) computes the
    same update. Metadata: rank, alpha, targets and the base probe."""
    layers = {n: m for n, m in adapted(model).items() if name in m.lora}
    if not layers:
        raise VidiffError(f"the model has no LoRA adapter named '{name}'")
    first = next(iter(layers.values())).lora[name]
    tensors = {}
    for n, layer in layers.items():
        adapter = layer.lora[name]
        tensors[f"{prefix}{n}.lora_A.weight"] = adapter.down.weight.detach().float().cpu().contiguous()
        tensors[f"{prefix}{n}.lora_B.weight"] = (adapter.up.weight.detach().float().cpu()
                                                 * (adapter.alpha / adapter.rank)).contiguous()
    metadata = {"format": "pt", "r": str(first.rank), "lora_alpha": str(first.rank), "target_modules": json.dumps(targets),
                "vidiff_base_probe": json.dumps({n: probe(layer) for n, layer in layers.items()})}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)                         # safetensors writes 0600; as readable as any other file
    tmp.replace(path)                                     # atomic: a crash never leaves half a file
    return path


def save_peft_adapter(model: nn.Module, name: str, folder: str | Path, targets: list[str]) -> Path:
    """Adapter `name` as a peft adapter folder (adapter_config.json + adapter_model.safetensors) that
    `PeftModel.from_pretrained(model, folder)` loads onto the same model."""
    from peft import LoraConfig
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    layers = sorted({n for n, m in adapted(model).items() if name in m.lora})
    first = next(m for m in adapted(model).values() if name in m.lora).lora[name]
    save_lora(model, name, folder / "adapter_model.safetensors", targets)
    LoraConfig(r=first.rank, lora_alpha=first.rank, target_modules=layers).save_pretrained(str(folder))
    return folder


def _rank_alpha(meta: dict, tensors: dict, path: Path) -> tuple[int, float]:
    """The adapter's rank and alpha: vidiff's metadata, diffusers' lora_adapter_metadata, a peft
    adapter_config.json beside the file, or else (as diffusers does) the rank of A and alpha = rank."""
    if "r" in meta:
        return int(meta["r"]), float(meta["lora_alpha"])
    if "lora_adapter_metadata" in meta:
        config = {k.rsplit(".", 1)[-1] if k.startswith("transformer.") else k: v
                  for k, v in json.loads(meta["lora_adapter_metadata"]).items()}
        if "r" in config:
            return int(config["r"]), float(config.get("lora_alpha") or config["r"])
    peft_config = path.with_name("adapter_config.json")
    if peft_config.is_file():
        config = json.loads(peft_config.read_text())
        return int(config["r"]), float(config.get("lora_alpha") or config["r"])
    rank = next(t.shape[0] for k, t in tensors.items() if k.endswith(".lora_A.weight"))
    return rank, float(rank)


def _strip(key: str, prefixes: tuple[str, ...]) -> str | None:
    return next((key[len(p):] for p in prefixes if key.startswith(p)), None)


def load_lora(model: nn.Module, path: str | Path, scale: float = 1.0, name: str | None = None,
              prefixes: tuple[str, ...] = (PREFIX,)) -> str:
    """Add the adapter in `path` to `model` (stacking on any already there) at `scale`; returns its name.
    Keys are `<prefix><module>.lora_A.weight` for one of `prefixes` (a diffusers-format model's
    transformer takes diffusers' `transformer.` and peft's `base_model.model.`). A folder: its
    lora.safetensors, or a peft adapter's adapter_model.safetensors. An adapter whose layers, shapes or
    base weights are not this model's is a one-line error."""
    path = Path(path)
    if path.is_dir():
        path = path / ("adapter_model.safetensors" if (path / "adapter_model.safetensors").is_file()
                       else "lora.safetensors")
    if not path.is_file():
        raise VidiffError(f"LoRA adapter '{path}' not found")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        tensors = {_strip(k, prefixes): t for k, t in tensors.items() if _strip(k, prefixes) is not None}
        names = sorted({k[:-len(".lora_A.weight")] for k in tensors if k.endswith(".lora_A.weight")})
        if not names:
            raise VidiffError(f"'{path}' holds no LoRA weights for this model (keys like "
                              f"'{prefixes[0]}<layer>.lora_A.weight')")
        rank, alpha = _rank_alpha(meta, tensors, path)
        probes = json.loads(meta.get("vidiff_base_probe", "{}"))
    except (KeyError, ValueError, OSError, RuntimeError, SafetensorError) as e:
        raise VidiffError(f"'{path}' is not a LoRA adapter file ({type(e).__name__}: {e})") from None
    layers = dict(model.named_modules())
    for n in names:
        layer = layers.get(n)
        a, b = tensors.get(f"{n}.lora_A.weight"), tensors.get(f"{n}.lora_B.weight")
        fresh = Adapter(layer, rank, alpha) if layer is not None and adaptable(layer) else None
        if fresh is None or a is None or b is None or a.shape != fresh.down.weight.shape \
                or b.shape != fresh.up.weight.shape:
            raise VidiffError(f"LoRA adapter '{path.name}' was made for another base model: its layer '{n}' does not fit this one")
        if n in probes and not torch.allclose(torch.tensor(probe(layer)), torch.tensor(probes[n]),
                                              rtol=PROBE_TOLERANCE, atol=1e-3):
            raise VidiffError(f"LoRA adapter '{path.name}' was trained on another base model: the weights of '{n}' differ")
    name = re.sub(r"\W", "_", name or path.stem)           # a module name: no dots
    existing = set(adapter_names(model))
    while name in existing:
        name += "_"
    for n in names:
        layer = layers[n]
        if not hasattr(layer, "lora"):
            layer.lora = nn.ModuleDict()
            layer.register_forward_hook(_hook)
        adapter = Adapter(layer, rank, alpha, scale)
        with torch.no_grad():
            adapter.down.weight.copy_(tensors[f"{n}.lora_A.weight"])
            adapter.up.weight.copy_(tensors[f"{n}.lora_B.weight"])
        layer.lora[name] = adapter
    return name
