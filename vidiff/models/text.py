"""A word-level tokenizer and a small transformer text encoder, trained jointly with the video model.

Captions of the synthetic world are short and drawn from a closed vocabulary, so a word-level
tokenizer is exact; a word outside the vocabulary is an error (the model has never seen it, and a
silent <unk> would produce a video that ignores part of the prompt). The empty prompt is the
unconditional input for classifier-free guidance: every sequence starts with <bos>, so attention
always has at least one key.
"""
from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from ..errors import VidiffError

PAD, BOS = "<pad>", "<bos>"


class WordTokenizer:
    """known: the words prompts may use (default: all of vocab); the others have embeddings the model
    never trained, so a prompt with one is refused rather than silently half-ignored."""

    def __init__(self, vocab: list[str], max_length: int, known: list[str] | None = None):
        self.words = [PAD, BOS, *vocab]
        self.index = {w: i for i, w in enumerate(self.words)}
        self.known = list(vocab) if known is None else [w for w in vocab if w in set(known)]
        self.max_length = max_length

    def __len__(self) -> int:
        return len(self.words)

    def split(self, prompt: str) -> list[str]:
        """Lower-case words; ASCII punctuation separates them. Anything else (an accent, an emoji) stays
        in its word, which is then unknown: a prompt is never changed silently."""
        return re.sub(r"[!-/:-@\[-`{-~]", " ", prompt.lower()).split()

    def encode(self, prompts: list[str]) -> Tensor:
        """Prompts -> (B, max_length) ids: <bos> words... <pad>...  Raises VidiffError on unknown words."""
        ids = torch.zeros(len(prompts), self.max_length, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            words = self.split(prompt)
            unknown = [w for w in words if w not in self.known]
            if unknown:
                raise VidiffError(f"unknown word '{_cut(unknown[0], 40)}' in prompt '{_cut(prompt)}'; "
                                  f"this model knows: {', '.join(self.known)}")
            if len(words) + 1 > self.max_length:
                raise VidiffError(f"prompt '{_cut(prompt)}' has {len(words)} words; this model takes at most "
                                  f"{self.max_length - 1}")
            ids[row, : len(words) + 1] = torch.tensor([self.index[BOS]] + [self.index[w] for w in words])
        return ids


    def empty(self, batch: int) -> Tensor:
        """The empty prompt, <bos> alone: the unconditional input of classifier-free guidance (the
        prompt dropped in training, and the null branch in sampling)."""
        ids = torch.zeros(batch, self.max_length, dtype=torch.long)
        ids[:, 0] = self.index[BOS]
        return ids


def _cut(prompt: str, keep: int = 80) -> str:
    """A prompt as an error repeats it: a 10,000-character prompt must not make a 10,000-character line."""
    return prompt if len(prompt) <= keep else f"{prompt[:keep]}... ({len(prompt)} characters)"


class TextEncoder(nn.Module):
    """Token ids (B, L) -> contextual embeddings (B, L, dim) and a key mask (B, L), True at real tokens."""

    def __init__(self, vocab_size: int, max_length: int, dim: int, layers: int, heads: int):
        super().__init__()
        self.token = nn.Embedding(vocab_size, dim)
        self.position = nn.Parameter(torch.zeros(1, max_length, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.token.weight, std=0.02)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        mask = ids != 0
        h = self.token(ids) + self.position[:, : ids.shape[1]]      # (B, L, D)
        h = self.layers(h, src_key_padding_mask=~mask)
        return self.norm(h), mask
