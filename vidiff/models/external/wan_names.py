"""Wan's module names in diffusers and in the original Wan code, which ComfyUI's `diffusion_model.` keys
and musubi-tuner's `lora_unet_` keys use: what lets a LoRA file from either load onto diffusers'
transformer, and a vidiff LoRA be written for ComfyUI."""
from __future__ import annotations

# diffusers' name inside a block -> the original's
BLOCK = {"attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
         "attn1.to_out.0": "self_attn.o", "attn1.norm_q": "self_attn.norm_q", "attn1.norm_k": "self_attn.norm_k",
         "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k", "attn2.to_v": "cross_attn.v",
         "attn2.to_out.0": "cross_attn.o", "attn2.norm_q": "cross_attn.norm_q", "attn2.norm_k": "cross_attn.norm_k",
         "attn2.add_k_proj": "cross_attn.k_img", "attn2.add_v_proj": "cross_attn.v_img",
         "attn2.norm_added_k": "cross_attn.norm_k_img",
         "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2",
         "norm2": "norm3", "norm3": "norm2"}          # diffusers' norm2 is the cross-attention norm, Wan's norm3
TOP = {"patch_embedding": "patch_embedding", "proj_out": "head.head",
       "condition_embedder.text_embedder.linear_1": "text_embedding.0",
       "condition_embedder.text_embedder.linear_2": "text_embedding.2",
       "condition_embedder.time_embedder.linear_1": "time_embedding.0",
       "condition_embedder.time_embedder.linear_2": "time_embedding.2",
       "condition_embedder.time_proj": "time_projection.1",
       "condition_embedder.image_embedder.norm1": "img_emb.proj.0",
       "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
       "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
       "condition_embedder.image_embedder.norm2": "img_emb.proj.4"}


def original_names(blocks: int) -> dict[str, str]:
    """diffusers module name -> the original Wan code's, for a transformer of `blocks` blocks."""
    return {**TOP, **{f"blocks.{i}.{d}": f"blocks.{i}.{o}" for i in range(blocks) for d, o in BLOCK.items()}}
