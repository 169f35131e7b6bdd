"""Memory of LoRA training on Wan 2.1 1.3B and 14B at 81 frames of 480x832, batch 1, in vidiff's modes
(a benchmark, not a test): the weights counted on the meta device (no download, no memory), the
activations estimated from the token count, and the sum against the issue's targets (1.3B under 16 GB,
14B under 24 GB). Measured on a GPU when one is lent (not yet).

    python benchmarks/lora_memory.py

The activation estimate: a block keeps about (12 dim + 2 ffn) values a token for backward in bf16
(its projections, norms, attention output, the MLP's two wide tensors); activation checkpointing keeps
each block's input instead (the residual stream, fp32 under autocast) plus one block's worth during
its recomputation. Block swap (model.blocks_to_swap) keeps N blocks' frozen weights on the host with
one of them on the device at a time. The frozen base is fp32 under bf16 autocast, or with
model.fp8_base its blocks' linear weights are float8 (1 byte, plus a float32 scale per row). Activation
offload (model.offload_activations) keeps the checkpointed block inputs on the host: one comes back at a
time for its block's recomputation.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import publish                                            # noqa: E402
from vidiff.models.external.random_wan import PRESETS                  # noqa: E402

FRAMES, HEIGHT, WIDTH, RANK = 81, 480, 832, 32
TARGETS = {"1.3B": 16, "14B": 24}
GB = 1e9


def sizes(preset: str) -> dict:
    from diffusers import WanTransformer3DModel
    c = PRESETS[preset]["transformer"]
    with torch.device("meta"):
        t = WanTransformer3DModel(**c)
    block = sum(p.numel() for p in t.blocks[0].parameters())
    linear = sum(m.weight.numel() for m in t.blocks[0].modules() if isinstance(m, torch.nn.Linear))
    rows_out = sum(m.weight.shape[0] for m in t.blocks[0].modules() if isinstance(m, torch.nn.Linear))
    total = sum(p.numel() for p in t.parameters())
    dim = c["num_attention_heads"] * c["attention_head_dim"]
    tokens = ((FRAMES - 1) // 4 + 1) * (HEIGHT // 16) * (WIDTH // 16)
    lora = c["num_layers"] * 8 * RANK * 2 * dim            # q, k, v, out of both attentions
    return dict(blocks=c["num_layers"], block=block, linear=linear, rows_out=rows_out, rest=total - c["num_layers"] * block, total=total, dim=dim,
                ffn=c["ffn_dim"], tokens=tokens, lora=lora)


def rows(preset: str) -> list[str]:
    s = sizes(preset)
    inside = s["tokens"] * (12 * s["dim"] + 2 * s["ffn"]) * 2            # one block's saved tensors, bf16
    stream = s["tokens"] * s["dim"] * 4                                 # a block's input, fp32
    trained = s["lora"] * 4 * 4                                         # LoRA weights, grads, Adam's two moments
    modes = []
    # a block's bytes: fp32, or fp8 linear weights with a float32 scale per row and the rest fp32
    fp32_block = s["block"] * 4
    fp8_block = s["linear"] + s["rows_out"] * 4 + (s["block"] - s["linear"]) * 4
    for name, block_bytes, checkpointing, swap in (
            ("fp32 base, no checkpointing", fp32_block, False, 0),
            ("fp32 base, checkpointing (default)", fp32_block, True, 0),
            ("fp32 base, checkpointing, swap all but 4 blocks", fp32_block, True, s["blocks"] - 4),
            ("fp8 base, checkpointing", fp8_block, True, 0),
            ("fp8 base, checkpointing, swap all but 4 blocks", fp8_block, True, s["blocks"] - 4),
            ("fp8 base, checkpointing + activation offload, swap all but 4 blocks", fp8_block, "offload",
             s["blocks"] - 4)):
        resident = (s["blocks"] - swap) + (1 if swap else 0)
        weights = s["rest"] * 4 + resident * block_bytes + trained
        # offload: the checkpointed block inputs live on the host; one block's input comes back for its recomputation
        acts = (stream + inside if checkpointing == "offload" else s["blocks"] * stream + inside if checkpointing
                else s["blocks"] * inside)
        total = (weights + acts) / GB
        verdict = "fits" if total < TARGETS[preset] else "does not fit"
        modes.append(f"| {preset} | {name} | {weights / GB:.1f} | {acts / GB:.1f} | {total:.1f} | "
                     f"{verdict} {TARGETS[preset]} GB |")
    return modes


def table() -> list[str]:
    lines = [f"LoRA rank {RANK} on the attention projections, batch 1, {FRAMES} frames of {HEIGHT}x{WIDTH} "
             f"({sizes('1.3B')['tokens']} tokens). Weights counted on the meta device; activations estimated "
             "(see benchmarks/lora_memory.py); not yet measured on a GPU.", "",
             "| model | mode | weights + LoRA state, GB | activations (estimate), GB | total, GB | target |",
             "|---|---|---|---|---|---|"]
    for preset in ("1.3B", "14B"):
        s = sizes(preset)
        lines += rows(preset)
        lines.append(f"| {preset} | (transformer: {s['total'] / 1e9:.2f} B parameters, {s['blocks']} blocks of "
                     f"{s['block'] / 1e6:.0f} M) | | | | |")
    big = sizes("14B")
    lines += ["", "Activation offload (model.offload_activations) matters for the 14B: with block swap and fp8 its "
              "weights are small, but the checkpointed residual stream is "
              f"{big['blocks'] * big['tokens'] * big['dim'] * 4 / GB:.1f} GB (fp32 at 81x480x832), which offload "
              "moves to host memory (pinned), so the host needs that much free besides the swapped blocks."]
    return lines


def main() -> None:
    publish("lora_memory", "LoRA training memory of Wan 2.1 at 480x832x81", "\n".join(table()),
            "python benchmarks/lora_memory.py")


if __name__ == "__main__":
    main()
