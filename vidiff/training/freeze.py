"""train.trainable: which parameters a run updates. The rest get requires_grad False and stay out of
the optimizer, so they are bit-identical after training (AnimateDiff trains only its motion modules
on a frozen image model; Make-A-Video fine-tunes everything)."""
from __future__ import annotations

from fnmatch import fnmatch

from torch import nn

from ..errors import VidiffError


def trainable_patterns(model: nn.Module, spec: str) -> tuple[str, ...]:
    """Glob patterns for a spec: `all`, `temporal` (the backbone's frame-mixing layers) or globs of
    parameter names, comma-separated and combinable (`temporal,backbone.*.to_q.*`)."""
    patterns: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part == "all":
            patterns.append("*")
        elif part == "temporal":
            temporal = getattr(getattr(model, "backbone", model), "TEMPORAL", None)
            if temporal is None:
                raise VidiffError("train.trainable: temporal needs a backbone with temporal layers (unet3d, dit)")
            patterns += [f"backbone.{p}" if hasattr(model, "backbone") else p for p in temporal]
        else:
            patterns.append(part)
    return tuple(patterns)


def freeze_except(model: nn.Module, spec: str, also_freeze: str | None = None) -> list[str]:
    """Freeze every parameter whose name matches none of spec's patterns (or matches also_freeze's);
    returns the trainable names. A spec that matches nothing is an error, never a silent full freeze."""
    patterns = trainable_patterns(model, spec)
    excluded = trainable_patterns(model, also_freeze) if also_freeze else ()
    names = [n for n, _ in model.named_parameters()
             if any(fnmatch(n, p) for p in patterns) and not any(fnmatch(n, p) for p in excluded)]
    if not names:
        raise VidiffError(f"train.trainable '{spec}' matches no parameter; names look like "
                          f"'{next(iter(dict(model.named_parameters())))}'")
    keep = set(names)
    for name, p in model.named_parameters():
        p.requires_grad_(name in keep)
    return names
