"""Other people's models, in diffusers format, behind vidiff's interfaces. One adapter file per family
(wan.py) wraps the library's own modules as a backbone, a codec and a text encoder; this registry is
keyed by the pipeline class that the directory's model_index.json names. Above models/, nothing knows
a family's name. diffusers and transformers come with the optional extra `vidiff[diffusers]`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ...errors import VidiffError
from ..bundle import Bundle

# model_index.json's _class_name -> adapter module (which checks what of the class it runs)
FAMILIES = {"WanPipeline": "wan", "WanImageToVideoPipeline": "wan"}
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
                "model.safetensors.index.json", "diffusion_pytorch_model.bin", "pytorch_model.bin")
EXTRA = 'pip install -e ".[diffusers]"'


def is_open_model(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "model_index.json").is_file()


def _index(folder: Path) -> dict:
    try:
        return json.loads((folder / "model_index.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise VidiffError(f"'{folder / 'model_index.json'}' is not readable JSON ({e})") from None


def check_components(folder: Path, index: dict, family_components: dict) -> None:
    """Every component the family needs is in the directory, with weights where it has any."""
    for name in family_components:
        sub = folder / name
        if name not in index or not sub.is_dir():
            raise VidiffError(f"'{folder}' has no '{name}' component (model_index.json and the folder '{name}/' "
                              "are both needed)")
        if name in ("transformer", "transformer_2", "vae", "text_encoder") and not any((sub / f).is_file() for f in WEIGHT_FILES):
            raise VidiffError(f"'{sub}' has no weights file ({' or '.join(WEIGHT_FILES[:2])})")


def check_flags(folder: Path, index: dict, family) -> None:
    """A directory vidiff cannot run whole is a one-line error, never a silent half-model: a component the
    family's adapter does not use, a model_index.json flag it does not handle, or settings that do not go
    together (the family's check_index)."""
    family.check_index(folder, index)
    settings = {k: v for k, v in index.items() if not k.startswith("_")}
    components = {k: v for k, v in settings.items() if isinstance(v, list) and len(v) == 2}
    for key, value in components.items():
        if value != [None, None] and key not in family.COMPONENTS and key not in family.OPTIONAL:
            raise VidiffError(f"'{folder}' has a '{key}' component ({value[1]}) that vidiff's adapter does not use; it "
                              f"would run only part of the model (components it runs: {', '.join(family.COMPONENTS)})")
    for key, value in settings.items():
        if key not in components and value not in (None, False) and key not in family.FLAGS:
            raise VidiffError(f"'{folder}' sets {key}: {value} in model_index.json, which vidiff does not handle yet "
                              f"(a newer release of the family); it would sample it wrong")
    for key in family.OPTIONAL:
        if (index.get(key) or [None])[0] is not None:
            check_components(folder, {key: index[key]}, {key: family.OPTIONAL[key]})


def load_scheduler(folder: Path):
    import diffusers
    config = folder / "scheduler" / "scheduler_config.json"
    try:
        cls_name = json.loads(config.read_text()).get("_class_name")
    except (OSError, AttributeError, json.JSONDecodeError) as e:
        raise VidiffError(f"cannot read the scheduler config '{config}' ({type(e).__name__}: {e})") from None
    if not isinstance(cls_name, str) or not hasattr(diffusers, cls_name):
        raise VidiffError(f"'{config}' names no diffusers scheduler class (its _class_name is {cls_name!r}; e.g. "
                          "UniPCMultistepScheduler)")
    try:
        return getattr(diffusers, cls_name).from_pretrained(folder / "scheduler")
    except (OSError, ValueError, TypeError) as e:
        raise VidiffError(f"cannot load the scheduler in '{folder / 'scheduler'}' ({type(e).__name__}: {e})") from None


def open_family(path: str | Path):
    """(folder, adapter module) of a diffusers-format directory of a supported family; one-line errors
    for a missing extra, an unsupported pipeline class and a missing component or weights file."""
    folder = Path(path)
    if not is_open_model(folder):
        raise VidiffError(f"'{folder}' is not a diffusers-format model directory (no model_index.json)")
    index = _index(folder)
    name = index.get("_class_name")
    if name not in FAMILIES:
        raise VidiffError(f"'{folder}' holds a {name or 'unnamed'} pipeline; vidiff runs these diffusers pipelines: "
                          f"{', '.join(FAMILIES)}")
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise VidiffError(f"'{folder}' is a diffusers-format {name} model: install the extra ({EXTRA})") from None
    from importlib import import_module
    family = import_module(f".{FAMILIES[name]}", __name__)
    check_components(folder, index, family.COMPONENTS)
    check_flags(folder, index, family)
    return folder, family


def load_open_bundle(path: str | Path, dtype: torch.dtype = torch.float32, backbone: nn.Module | None = None,
                     text_encoder: bool = True) -> Bundle:
    """All of a directory's components as a bundle (the transformer and text encoder in `dtype`);
    backbone: the directory's transformer already loaded (a training run's, with its adapters);
    text_encoder False: without it (prompts encoded earlier)."""
    folder, family = open_family(path)
    return family.bundle(folder, dtype, load_scheduler(folder), backbone, text_encoder)


def family_of(path: str | Path) -> str:
    """The adapter family of a directory (its weights' model_type in vidiff checkpoints), e.g. 'wan'."""
    return open_family(path)[1].NAME


def load_open_backbone(path: str | Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The directory's transformer alone (a training run's fresh copy)."""
    folder, family = open_family(path)
    return family.load_backbone(folder, dtype)


def open_clip_multiples(path: str | Path) -> tuple[int, int]:
    """(t, m): the directory's clips take 1 + t*k frames, and sides that are multiples of m pixels."""
    folder, family = open_family(path)
    return family.clip_multiples(folder)


def open_lora_names(path: str | Path) -> dict[str, str]:
    """A directory's transformer module names -> the names its family's own code uses (ComfyUI's and
    musubi-tuner's LoRA keys), without loading weights."""
    folder, family = open_family(path)
    return family.lora_names(folder)
