"""The synthetic world's words: its palette, shapes and caption grammar, in one place.

The data renders and captions clips with these, the evaluation parses captions back into the
(colour, shape) objects it looks for, and the config checks a model's vocabulary against them.
A caption is "a <colour> <shape> [and a <colour> <shape> ...] bouncing".
"""
from __future__ import annotations

import re

COLOURS = {  # named palette (RGB)
    "red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 240), "yellow": (240, 220, 40),
    "magenta": (220, 50, 220), "cyan": (40, 220, 230), "white": (240, 240, 240), "orange": (250, 140, 20),
}
DEFAULT_COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan")   # what the shipped recipes use
SHAPES = ("circle", "square", "triangle")
GRAMMAR_WORDS = ("a", "and", "bouncing")

_OBJECT = re.compile(rf"\b({'|'.join(COLOURS)})\s+({'|'.join(SHAPES)})\b")


def vocabulary(colours, shapes) -> list[str]:
    """Every word a caption of a world with these colours and shapes can contain, and no other."""
    return [*GRAMMAR_WORDS, *colours, *shapes]


def make_caption(objects: list[tuple[str, str]]) -> str:
    """[('red', 'circle'), ('blue', 'square')] -> 'a red circle and a blue square bouncing'."""
    return " and ".join(f"a {colour} {shape}" for colour, shape in objects) + " bouncing"


def parse_caption(caption: str) -> list[tuple[str, str]]:
    """'a red circle and a blue square bouncing' -> [('red', 'circle'), ('blue', 'square')]."""
    return _OBJECT.findall(caption.lower())
