"""Random-weight Wan directories in diffusers format, for tests and benchmarks: real loading code runs
on them with no download. `tiny` samples in about a second on a CPU; `1.3B` is Wan 2.1 T2V-1.3B's
real configuration (the sizes its components have; built on the meta device when only their bytes
are wanted). Layouts: Wan 2.1 (one transformer), Wan 2.2 A14B (two experts split at boundary_ratio)
and Wan 2.2 TI2V-5B (a residual VAE packing 2x2 pixels per channel group, per-token timesteps)."""
from __future__ import annotations

from pathlib import Path

import torch

WORDS = ("a cat walks on the grass dog runs in snow red blue ball bounces over table camera pans slowly "
         "bright light dark room").split()

PRESETS = {
    "tiny": {
        "transformer": dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4,
                            out_channels=4, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=2, rope_max_seq_len=64),
        "vae": dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True],
                    latents_mean=[0.1, -0.2, 0.3, 0.0], latents_std=[1.5, 0.8, 1.2, 2.0]),
        "text": dict(vocab_size=len(WORDS) + 3, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4,
                     relative_attention_num_buckets=8),
        "flow_shift": 3.0,
    },
    "small": {  # a CPU benchmark's size: every part of the real architecture, a few hundred times smaller
        "transformer": dict(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=32, in_channels=16,
                            out_channels=16, text_dim=128, freq_dim=64, ffn_dim=512, num_layers=4, rope_max_seq_len=256),
        "vae": dict(base_dim=16, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True],
                    latents_mean=[0.0] * 16, latents_std=[1.0] * 16),
        "text": dict(vocab_size=len(WORDS) + 3, d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=16),
        "flow_shift": 3.0,
    },
    "1.3B": {   # Wan-AI/Wan2.1-T2V-1.3B-Diffusers' configuration
        "transformer": dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                            out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30,
                            cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024),
        "vae": dict(),       # AutoencoderKLWan's defaults are Wan 2.1's VAE
        "text": dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                     relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", dense_act_fn="gelu_new"),
        "flow_shift": 3.0,
    },
}
# Wan-AI/Wan2.1-T2V-14B-Diffusers' transformer (the same VAE and text encoder as the 1.3B)
PRESETS["14B"] = {**PRESETS["1.3B"], "transformer": {**PRESETS["1.3B"]["transformer"], "num_attention_heads": 40,
                                                     "ffn_dim": 13824, "num_layers": 40}}


def word_tokenizer():
    """A word-level tokenizer in transformers' format (pad 0, eos 1, unk 2, eos appended as T5's is)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=512)


def components(preset: str = "tiny", seed: int = 0) -> dict:
    """The five components of a WanPipeline with random weights (under `with torch.device("meta"):`
    shapes only, no memory: the real configuration's sizes)."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel
    p = PRESETS[preset]
    torch.manual_seed(seed)
    return {"transformer": WanTransformer3DModel(**p["transformer"]).eval(),
            "vae": AutoencoderKLWan(**p["vae"]).eval(),
            "text_encoder": UMT5EncoderModel(UMT5Config(**p["text"])).eval(),
            "tokenizer": word_tokenizer(),
            "scheduler": UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                 num_train_timesteps=1000, flow_shift=p["flow_shift"])}


LAYOUTS = ("2.1", "a14b", "ti2v")
BOUNDARY_RATIO = 0.875          # Wan 2.2 A14B text-to-video's (its image-to-video uses 0.9)


def layout_components(preset: str, seed: int, layout: str) -> tuple[dict, dict]:
    """(components, pipeline flags) of a layout: A14B adds a second expert, TI2V-5B swaps in its
    48-channel residual VAE (tiny: 8 channels) and turns on expand_timesteps."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    c = components(preset, seed)
    if layout == "2.1":
        return c, {}
    p = PRESETS[preset]
    if layout == "a14b":
        torch.manual_seed(seed + 1)
        return {**c, "transformer_2": WanTransformer3DModel(**p["transformer"]).eval()}, {"boundary_ratio": BOUNDARY_RATIO}
    if layout != "ti2v":
        raise ValueError(f"unknown Wan layout '{layout}' (one of {LAYOUTS})")
    z = 8 if preset == "tiny" else 48
    torch.manual_seed(seed + 2)
    vae = AutoencoderKLWan(base_dim=8 if preset == "tiny" else 160, z_dim=z, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                           temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
                           patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4,
                           latents_mean=[0.05 * i for i in range(z)], latents_std=[1.0 + 0.1 * i for i in range(z)]).eval()
    torch.manual_seed(seed + 3)
    transformer = WanTransformer3DModel(**{**p["transformer"], "in_channels": z, "out_channels": z}).eval()
    return {**c, "vae": vae, "transformer": transformer}, {"expand_timesteps": True}


def save_random_wan(path: str | Path, preset: str = "tiny", seed: int = 0, layout: str = "2.1") -> Path:
    """Write a random-weight WanPipeline directory (diffusers' save_pretrained); returns its path."""
    from diffusers import WanPipeline
    parts, flags = layout_components(preset, seed, layout)
    WanPipeline(**parts, **flags).save_pretrained(str(path))
    return Path(path)
