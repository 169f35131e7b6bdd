import pytest
import torch

from vidiff.config import TextConfig
from vidiff.errors import VidiffError
from vidiff.models.text import TextEncoder, WordTokenizer


@pytest.fixture
def tokenizer():
    return WordTokenizer(TextConfig().vocab, max_length=8)


def test_encode_adds_bos_and_pads(tokenizer):
    ids = tokenizer.encode(["A red circle, bouncing.", ""])
    bos, red = tokenizer.index["<bos>"], tokenizer.index["red"]
    assert ids.shape == (2, 8)
    assert ids[0, :5].tolist() == [bos, tokenizer.index["a"], red, tokenizer.index["circle"], tokenizer.index["bouncing"]]
    assert ids[0, 5:].eq(0).all() and ids[1].tolist() == [bos] + [0] * 7


def test_unknown_word_is_a_one_line_error_listing_the_vocabulary(tokenizer):
    with pytest.raises(VidiffError, match="unknown word 'dog'.*knows: a, and") as e:
        tokenizer.encode(["a red dog bouncing"])
    assert "\n" not in str(e.value)


def test_too_long_prompt_is_rejected(tokenizer):
    with pytest.raises(VidiffError, match="at most 7"):
        tokenizer.encode(["a red circle and a blue square and a green triangle"])


def test_encoder_returns_tokens_and_mask(tokenizer):
    enc = TextEncoder(len(tokenizer), 8, 32, 1, 2)
    tokens, mask = enc(tokenizer.encode(["a red circle", ""]))
    assert tokens.shape == (2, 8, 32) and mask.sum(1).tolist() == [4, 1]
    assert torch.isfinite(tokens).all()
