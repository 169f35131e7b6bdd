"""Run under torchrun by tests/test_sequence_parallel.py: a tiny DiT's output and gradients with its
clip split over the processes, against the same model on the whole clip in this process."""
import json
import os
import sys

import torch
import torch.distributed as dist

from vidiff.errors import VidiffError
from vidiff.models.dit import DiT3D
from vidiff.models.sequence_parallel import sequence_group


def run(model, x, log_snr, context, mask):
    model.zero_grad()
    out = model(x, log_snr, context, mask)
    out.square().mean().backward()
    return out.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def main(attention: str, frames: int, out_path: str) -> None:
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = DiT3D(in_channels=3, width=32, depth=2, head_dim=8, patch=(1, 2, 2), attention=attention, context_dim=16,
                  activation_checkpointing=True).train()
    with torch.no_grad():                        # adaLN-Zero starts every block as the identity: wake them up
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x, log_snr = torch.randn(2, 3, frames, 8, 8), torch.tensor([0.3, -2.0])
    context, mask = torch.randn(2, 5, 16), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    ref_out, ref_grads = run(model, x, log_snr, context, mask)
    model.sequence = sequence_group()
    try:
        out, grads = run(model, x, log_snr, context, mask)
    except VidiffError as e:
        result = {"error": str(e)}
    else:
        partial = max((grads[n] - ref_grads[n]).abs().max().item() / (ref_grads[n].abs().max().item() + 1e-12)
                      for n in grads)
        for g in grads.values():                 # DDP's mean over the group
            dist.all_reduce(g)
            g /= dist.get_world_size()
        result = {"out": (out - ref_out).abs().max().item(),
                  "grad": max((grads[n] - ref_grads[n]).abs().max().item() / (ref_grads[n].abs().max().item() + 1e-12)
                              for n in grads),
                  "scale": ref_out.abs().max().item(), "partial": partial}
    if dist.get_rank() == 0:
        with open(out_path, "w") as f:
            json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()
    # gloo's threads can still abort an exiting interpreter on a loaded machine ("terminate called without
    # an active exception", see vidiff.distributed.shutdown); the result is written: leave at once
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
