"""Which frames each model-length window generates, for videos longer than the model's window.

Every window is exactly the trained length (the model has only seen that many frames at once); what
a window makes beyond what is needed is dropped. Pure index arithmetic, so it is tested on its own.
"""
from __future__ import annotations

from ..errors import VidiffError


def extension_plan(have: int, total: int, window: int, context: int) -> list[int]:
    """New frames kept from each window when a video of `have` frames grows to `total`: each window
    is conditioned on the last `context` frames and makes up to window - context new ones."""
    if not 1 <= context < window:
        raise VidiffError(f"--context must be between 1 and {window - 1} (the model's window is {window} frames), "
                          f"got {context}")
    if total <= have:
        raise VidiffError(f"the video already has {have} frames; ask for more (--frames > {have})")
    plan, made = [], have
    while made < total:
        plan.append(min(window - context, total - made))
        made += plan[-1]
    return plan


def interpolation_plan(keys: int, factor: int, window: int) -> list[tuple[int, list[int]]]:
    """(first output position, key indices) per window when `keys` frames become (keys - 1) * factor + 1:
    key j sits at output position j * factor, a window holds as many keys as fit in its length, and
    consecutive windows share a key, so every stretch between two keys is made in one window."""
    if keys < 2:
        raise VidiffError(f"interpolation needs a video of at least 2 frames, got {keys}")
    if not 2 <= factor <= window - 1:
        raise VidiffError(f"--factor must be between 2 and {window - 1} for this model's {window}-frame window, got {factor}")
    per = (window - 1) // factor + 1
    plan, i = [], 0
    while i < keys - 1:
        held = list(range(i, min(i + per, keys)))
        plan.append((i * factor, held))
        i = held[-1]
    return plan
