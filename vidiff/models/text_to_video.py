"""The text-conditioned video model: a text encoder and a video backbone trained together."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import MAX_STRIDE
from ..errors import VidiffError
from .text import TextEncoder, WordTokenizer


class TextToVideoModel(nn.Module):
    """encode(ids) runs once per prompt; forward(x, log_snr, context, mask, frames) runs every sampling
    step. frames: the frame condition of a frame-conditioned model (known frames and their mask,
    diffusion.conditioning.frame_condition), or None for plain text-to-video.
    A stride-conditioned model also reads the frame stride of the clip it makes (1: the trained frame
    rate; s: every s-th frame, the keyframes of hierarchical long video), as SVD reads an fps id: a
    learned vector per stride added to every token of the encoded prompt, so each cross-attention
    sees it. Zero-initialised: stride conditioning added to a trained model changes nothing at first."""

    def __init__(self, backbone: nn.Module, vocab: list[str], max_length: int, dim: int, layers: int, heads: int,
                 known_words: list[str] | None = None, frame_conditioning: bool = False,
                 stride_conditioning: bool = False):
        super().__init__()
        self.frame_conditioning = frame_conditioning
        self.stride_embed = nn.Embedding(MAX_STRIDE + 1, dim) if stride_conditioning else None
        if self.stride_embed is not None:
            nn.init.zeros_(self.stride_embed.weight)
        self.tokenizer = WordTokenizer(vocab, max_length, known_words)
        self.text_encoder = TextEncoder(len(self.tokenizer), max_length, dim, layers, heads)
        self.backbone = backbone

    def encode(self, ids: Tensor, stride: int | Tensor = 1) -> tuple[Tensor, Tensor]:
        """(context, mask) of token ids; stride: an int, or a tensor of one per prompt (B,)."""
        context, mask = self.text_encoder(ids)
        if isinstance(stride, int):      # a caller's choice; a tensor is training data's, which the config checked
            if self.stride_embed is None and stride != 1:   # (a check of a tensor would be a host sync per step)
                raise VidiffError("this model was not trained with frame strides (model.stride_conditioning); "
                                  "it makes clips at stride 1 only")
            if not 1 <= stride <= MAX_STRIDE:
                raise VidiffError(f"the frame stride must be 1 to {MAX_STRIDE}, got {stride}")
        if self.stride_embed is None:
            return context, mask
        stride = torch.as_tensor(stride).to(ids.device, non_blocking=True).expand(ids.shape[0])
        # x sqrt(dim): the scale of the layer-normed tokens, so the zero-initialised vectors grow at their pace
        vector = self.stride_embed(stride) * self.stride_embed.embedding_dim ** 0.5
        return context + vector[:, None].to(context.dtype), mask

    def forward(self, x: Tensor, log_snr: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                frames: Tensor | None = None, ids: Tensor | None = None, stride: int | Tensor = 1) -> Tensor:
        """Pass an encoded prompt (context, mask), or token ids (and strides) to encode inside this call
        (training does, so data-parallel wrappers see every parameter used in forward)."""
        if ids is not None:
            context, mask = self.encode(ids, stride)
        return self.backbone(x, log_snr, context, mask, frames)
