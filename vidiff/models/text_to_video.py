"""The text-conditioned video model: a text encoder and a video backbone trained together."""
from __future__ import annotations

from torch import Tensor, nn

from .text import TextEncoder, WordTokenizer


class TextToVideoModel(nn.Module):
    """encode(ids) runs once per prompt; forward(x, log_snr, context, mask, frames) runs every sampling
    step. frames: the frame condition of a frame-conditioned model (known frames and their mask,
    diffusion.conditioning.frame_condition), or None for plain text-to-video."""

    def __init__(self, backbone: nn.Module, vocab: list[str], max_length: int, dim: int, layers: int, heads: int,
                 known_words: list[str] | None = None, frame_conditioning: bool = False):
        super().__init__()
        self.frame_conditioning = frame_conditioning
        self.tokenizer = WordTokenizer(vocab, max_length, known_words)
        self.text_encoder = TextEncoder(len(self.tokenizer), max_length, dim, layers, heads)
        self.backbone = backbone

    def encode(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        return self.text_encoder(ids)

    def forward(self, x: Tensor, log_snr: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                frames: Tensor | None = None, ids: Tensor | None = None) -> Tensor:
        """Pass an encoded prompt (context, mask), or token ids to encode inside this call (training
        does, so data-parallel wrappers see every parameter used in forward)."""
        if ids is not None:
            context, mask = self.encode(ids)
        return self.backbone(x, log_snr, context, mask, frames)
