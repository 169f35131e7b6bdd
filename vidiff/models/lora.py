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
import re
from fnmatch import fnmatch
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import VidiffError
from .lora_files import Layer, atomic_save, read_lora

LORA_NAME = "default"   # the adapter a `train.lora` run trains (peft's default adapter name)
PREFIX = "base_model.model."
PROBE = 8              # base weights per adapted layer kept in a file to recognise its base model
PROBE_TOLERANCE = 2e-2  # relative: a model cast to bf16 or fp16 is still the same base


class Adapter(nn.Module):
    """One adapter on one layer: a linear layer, or a convolution (down: the base's kernel to `rank`
    channels, up: 1x1, as peft does for convolutions). Downloaded files may add a bias difference
    (`diff_b`, peft's lora_B bias) and a full weight difference (`diff`); rank 0 is such a layer alone."""

    def __init__(self, base: nn.Module, rank: int, alpha: float, scale: float = 1.0, bias: bool = False,
                 diff: bool = False):
        super().__init__()
        if rank and isinstance(base, nn.Linear):
            self.down = nn.Linear(base.in_features, rank, bias=False)     # A: peft's kaiming-uniform init
            self.up = nn.Linear(rank, base.out_features, bias=False)      # B: zero, so it starts as identity
        elif rank:
            conv = type(base)               # its own class: the U-Net's convolutions run on their own layouts
            self.down = conv(base.in_channels, rank, base.kernel_size, base.stride, base.padding, base.dilation,
                             bias=False)
            self.up = conv(rank, base.out_channels, 1, bias=False)
        if rank:
            nn.init.zeros_(self.up.weight)
            self.down.to(base.weight.device, base.weight.dtype)
            self.up.to(base.weight.device, base.weight.dtype)
        like = base.weight
        self.bias = nn.Parameter(like.new_zeros(like.shape[0])) if bias else None
        self.diff = nn.Parameter(torch.zeros_like(like)) if diff else None
        self.base_forward = base._conv_forward if hasattr(base, "_conv_forward") else None
        self.rank, self.alpha, self.scale = rank, alpha, scale

    def delta(self, x: Tensor, *rest) -> Tensor:
        """rest: the base layer's other inputs (a temporal convolution's frame count)."""
        out = self.up(self.down(x, *rest), *rest) * (self.scale * self.alpha / self.rank) if self.rank else 0
        if self.diff is not None:
            out = out + self.scale * (F.linear(x, self.diff) if self.base_forward is None
                                      else self.base_forward(x, self.diff, None))
        if self.bias is not None:
            shape = (-1,) if self.base_forward is None else (-1, *[1] * (x.dim() - 2))
            out = out + self.scale * self.bias.view(shape)
        return out

    def weight(self, like: Tensor) -> Tensor:
        """The adapter as a dense update of the base weight `like`."""
        out = torch.zeros_like(like, dtype=torch.float32)
        if self.rank:
            out += ((self.up.weight.flatten(1).float() @ self.down.weight.flatten(1).float())
                    * (self.alpha / self.rank)).reshape(like.shape)
        if self.diff is not None:
            out += self.diff.float()
        return (out * self.scale).to(like.dtype)


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


def remove_lora(model: nn.Module, name: str | None = None) -> int:
    """Take adapter `name` (None: every adapter) off the model; returns the number of layers changed."""
    layers = {n: m for n, m in adapted(model).items() if name is None or name in m.lora}
    if name is not None and not layers:
        raise VidiffError(f"the model has no LoRA adapter named '{name}' (it has: {', '.join(adapter_names(model)) or 'none'})")
    for layer in layers.values():
        for key in [k for k in layer.lora if name is None or k == name]:
            del layer.lora[key]
    return len(layers)


def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its base weight (W += s alpha/r B A) and remove it: a plain model that
    computes what the adapted one did. Returns the number of layers changed."""
    layers = adapted(model)
    with torch.no_grad():
        for layer in layers.values():
            for adapter in layer.lora.values():
                layer.weight += adapter.weight(layer.weight)
                if adapter.bias is not None:
                    if layer.bias is None:
                        raise VidiffError("cannot merge a LoRA bias into a layer without one; keep it as an adapter")
                    layer.bias += (adapter.scale * adapter.bias).to(layer.bias.dtype)
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
    return atomic_save(tensors, Path(path), metadata)


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


def load_lora(model: nn.Module, path: str | Path, scale: float = 1.0, name: str | None = None,
              names: dict[str, str] | None = None) -> str:
    """Add the adapter in `path` to `model` (stacking on any already there) at `scale`; returns its name.
    Any format of lora_files (diffusers, peft, ComfyUI, kohya/musubi, with diff_b and diff keys);
    names: the family's module -> original names (None: vidiff's own model, its module names). A
    folder: its lora.safetensors, or a peft adapter's adapter_model.safetensors. An adapter whose
    layers, shapes or base weights are not this model's is a one-line error; ranks may differ per layer."""
    path = Path(path)
    if path.is_dir():
        path = path / ("adapter_model.safetensors" if (path / "adapter_model.safetensors").is_file()
                       else "lora.safetensors")
    if not path.is_file():
        raise VidiffError(f"LoRA adapter '{path}' not found")
    modules = dict(model.named_modules())
    layers, meta = read_lora(path, names, set(modules))
    if not layers:
        raise VidiffError(f"'{path}' holds no LoRA weights")
    try:
        probes = json.loads(meta.get("vidiff_base_probe", "{}"))
    except ValueError:
        probes = {}
    fresh = {}
    for n, layer in layers.items():
        base = modules.get(n)
        if base is not None and not adaptable(base):
            raise VidiffError(f"LoRA adapter '{path.name}' changes '{n}', a {type(base).__name__}: vidiff adapts "
                              "linear and convolution layers only")
        ok = base is not None
        if ok:
            fresh[n] = adapter = Adapter(base, layer.rank, layer.alpha or layer.rank or 1.0, scale,
                                         bias=layer.bias is not None, diff=layer.diff is not None)
            ok = (not layer.rank or (layer.down.shape == adapter.down.weight.shape
                                     and layer.up.shape == adapter.up.weight.shape)) \
                and (layer.bias is None or layer.bias.shape == adapter.bias.shape) \
                and (layer.diff is None or layer.diff.shape == adapter.diff.shape)
        if not ok:
            raise VidiffError(f"LoRA adapter '{path.name}' was made for another base model: its layer '{n}' does not fit this one")
        if n in probes and not torch.allclose(torch.tensor(probe(base)), torch.tensor(probes[n]),
                                              rtol=PROBE_TOLERANCE, atol=1e-3):
            raise VidiffError(f"LoRA adapter '{path.name}' was trained on another base model: the weights of '{n}' differ")
    name = re.sub(r"\W", "_", name or path.stem)           # a module name: no dots
    existing = set(adapter_names(model))
    while name in existing:
        name += "_"
    for n, layer in layers.items():
        base, adapter = modules[n], fresh[n]
        if not hasattr(base, "lora"):
            base.lora = nn.ModuleDict()
            base.register_forward_hook(_hook)
        with torch.no_grad():
            for param, value in ((adapter.down.weight if layer.rank else None, layer.down),
                                 (adapter.up.weight if layer.rank else None, layer.up),
                                 (adapter.bias, layer.bias), (adapter.diff, layer.diff)):
                if param is not None:
                    param.copy_(value)
        base.lora[name] = adapter
    return name


def adapter_layers(model: nn.Module, name: str) -> dict[str, Layer]:
    """Adapter `name` in lora_files' form (for writing it in any format)."""
    layers = {}
    for n, m in adapted(model).items():
        if name in m.lora:
            a = m.lora[name]
            layers[n] = Layer(down=a.down.weight.detach() if a.rank else None, up=a.up.weight.detach() if a.rank else None,
                              alpha=a.alpha, bias=None if a.bias is None else a.bias.detach(),
                              diff=None if a.diff is None else a.diff.detach())
    if not layers:
        raise VidiffError(f"the model has no LoRA adapter named '{name}'")
    return layers
