"""Memory of LoRA training on Wan 2.1 1.3B and 14B at 81 frames of 480x832, batch 1, in vidiff's modes
(a benchmark, not a test): the weights counted on the meta device (no download, no memory), the
activations estimated from the token count, and the sum against the issue's targets (1.3B under 16 GB,
14B under 24 GB). Measured on a GPU when one is lent (not yet).

    python benchmarks/lora_memory.py

The activation estimate: a block keeps about (12 dim + 2 ffn) values a token for backward in bf16
(its projections, norms, attention output, the MLP's two wide tensors); activation checkpointing keeps
each block's input instead (the residual stream, fp32 under autocast) plus one block's worth during
its recomputation. Block swap (model.blocks_to_swap) keeps N blocks' frozen weights on the host with
one of them on the device at a time. vidiff trains the frozen base in fp32 under bf16 autocast today.
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
    total = sum(p.numel() for p in t.parameters())
    dim = c["num_attention_heads"] * c["attention_head_dim"]
    tokens = ((FRAMES - 1) // 4 + 1) * (HEIGHT // 16) * (WIDTH // 16)
    lora = c["num_layers"] * 8 * RANK * 2 * dim            # q, k, v, out of both attentions
    return dict(blocks=c["num_layers"], block=block, rest=total - c["num_layers"] * block, total=total, dim=dim,
                ffn=c["ffn_dim"], tokens=tokens, lora=lora)


def rows(preset: str) -> list[str]:
    s = sizes(preset)
    inside = s["tokens"] * (12 * s["dim"] + 2 * s["ffn"]) * 2            # one block's saved tensors, bf16
    stream = s["tokens"] * s["dim"] * 4                                 # a block's input, fp32
    trained = s["lora"] * 4 * 4                                         # LoRA weights, grads, Adam's two moments
    modes = []
    for name, bytes_per, checkpointing, swap in (("fp32 base, no checkpointing", 4, False, 0),
                                                 ("fp32 base, checkpointing (default)", 4, True, 0),
                                                 ("fp32 base, checkpointing, swap all but 4 blocks", 4, True,
                                                  s["blocks"] - 4)):
        resident = s["rest"] + (s["blocks"] - swap) * s["block"] + (s["block"] if swap else 0)
        weights = resident * bytes_per + trained
        acts = s["blocks"] * stream + inside if checkpointing else s["blocks"] * inside
        total = (weights + acts) / GB
        verdict = "fits" if total < TARGETS[preset] else "does not fit"
        modes.append(f"| {preset} | {name} | {weights / GB:.1f} | {acts / GB:.1f} | {total:.1f} | "
                     f"{verdict} {TARGETS[preset]} GB |")
    return modes


def main() -> None:
    lines = [f"LoRA rank {RANK} on the attention projections, batch 1, {FRAMES} frames of {HEIGHT}x{WIDTH} "
             f"({sizes('1.3B')['tokens']} tokens). Weights counted on the meta device; activations estimated "
             "(see the script's docstring); not yet measured on a GPU.", "",
             "| model | mode | weights + LoRA state, GB | activations (estimate), GB | total, GB | target |",
             "|---|---|---|---|---|---|"]
    for preset in ("1.3B", "14B"):
        s = sizes(preset)
        lines += rows(preset)
        lines.append(f"| {preset} | (transformer: {s['total'] / 1e9:.2f} B parameters, {s['blocks']} blocks of "
                     f"{s['block'] / 1e6:.0f} M) | | | | |")
    lines += ["", "Not built yet, and so not in the table: a bf16 or fp8 frozen base (half or a quarter of the "
              "weights), and activation offload to the host (the checkpointed block inputs). The 14B rows show "
              "why they are needed for 24 GB: the checkpointed residual stream alone is "
              f"{sizes('14B')['blocks'] * sizes('14B')['tokens'] * sizes('14B')['dim'] * 4 / GB:.1f} GB."]
    publish("lora_memory", "LoRA training memory of Wan 2.1 at 480x832x81", "\n".join(lines),
            "python benchmarks/lora_memory.py")


if __name__ == "__main__":
    main()
