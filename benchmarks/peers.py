"""vidiff's video backbone next to its peers, same run, same machine, same input (a benchmark, not a test).

    pip install diffusers                                                                    # peer 1
    pip install --no-deps video-diffusion-pytorch einops-exts rotary-embedding-torch         # peer 2
    python benchmarks/peers.py [--quick] [--compile]

Peers, at parameter counts close to vidiff's default backbone (configs/tiny-shapes.yaml):
  diffusers  UNet3DConditionModel (ModelScope text-to-video), blocks (32, 64, 64), cross-attention on 16 tokens
  vdp        lucidrains' video-diffusion-pytorch Unet3D, dim 32, mults (1, 2, 2), a pooled text vector
Each model runs in its own process (so peak memory is its own) with all CPU threads. Per input case:
parameters; forward GFLOP and train-step GFLOP counted by torch's FlopCounterMode; train-step
wall-clock (forward, MSE, backward, AdamW); achieved GFLOP/s and its share of this machine's measured
fp32 matmul peak; the process's peak resident memory above its level before the first step. Then the
time to generate one 16x32x32 clip with each model's default sampler: model evaluations x measured
forward time at the sampler's batch (2 with classifier-free guidance).

video-diffusion-pytorch imports torchvision at module level for its Trainer only; a stub stands in
for it here because torchvision's wheel is a 5 GB CUDA download on this machine.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
import types

import torch

CASES = {"4x3x16x32x32": (4, 3, 16, 32, 32), "4x3x16x64x64": (4, 3, 16, 64, 64)}
CONTEXT_TOKENS, CONTEXT_DIM = 16, 128
# model -> (sampler, model evaluations per clip, batch per evaluation)
DEFAULT_SAMPLERS = {
    "vidiff": ("DDIM 25 steps, guidance 3", 25, 2),
    "vidiff compiled": ("DDIM 25 steps, guidance 3", 25, 2),
    "diffusers": ("TextToVideoSDPipeline: 50 steps, guidance 9", 50, 2),
    "vdp": ("GaussianDiffusion: 1000 ancestral steps", 1000, 1),
}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def diffusers_unet3d():
    """diffusers' UNet3DConditionModel at about the parameter count of vidiff's pixel U-Net (the peer both
    benchmarks use)."""
    from diffusers import UNet3DConditionModel
    return UNet3DConditionModel(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=CONTEXT_DIM, attention_head_dim=8, norm_num_groups=16)


def build(name: str):
    """(module, forward(x, batch) -> output) with each model's own conditioning inputs."""
    if name.startswith("vidiff"):
        from vidiff.config import load_config
        from vidiff.models import build_model
        model = build_model(load_config("configs/tiny-shapes.yaml").model).backbone
        if name == "vidiff compiled":
            model = torch.compile(model)
        ctx = torch.randn(8, CONTEXT_TOKENS, CONTEXT_DIM)
        mask = torch.ones(8, CONTEXT_TOKENS, dtype=torch.bool)
        return model, lambda x: model(x, torch.zeros(len(x)), ctx[:len(x)], mask[:len(x)])
    if name == "diffusers":
        model = diffusers_unet3d()
        ctx = torch.randn(8, CONTEXT_TOKENS, CONTEXT_DIM)
        return model, lambda x: model(x, torch.full((len(x),), 500), ctx[:len(x)]).sample
    if name == "vdp":
        stub = types.ModuleType("torchvision")
        stub.transforms, stub.utils = types.SimpleNamespace(ToTensor=lambda: None), types.SimpleNamespace()
        sys.modules.setdefault("torchvision", stub)
        from video_diffusion_pytorch.video_diffusion_pytorch import Unet3D
        model = Unet3D(dim=32, dim_mults=(1, 2, 2), cond_dim=CONTEXT_DIM, use_bert_text_cond=False)
        cond = torch.randn(8, CONTEXT_DIM)
        return model, lambda x: model(x, torch.full((len(x),), 500), cond=cond[:len(x)])
    raise ValueError(name)


def measure(name: str, shape: tuple, repeats: int, queue) -> None:
    from torch.utils.flop_counter import FlopCounterMode
    torch.manual_seed(0)
    model, forward = build(name)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(shape)

    def train_step():
        loss = (forward(x) - x).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    base = rss_mb()
    train_step()                                          # warm-up (and compilation)
    train_step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    start = time.perf_counter()
    for _ in range(repeats):
        train_step()
    step_s = (time.perf_counter() - start) / repeats
    uncompiled = getattr(model, "_orig_mod", model)
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            (forward if uncompiled is model else build_uncompiled_forward(name, uncompiled))(x)
    forward_flops = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        loss = ((forward if uncompiled is model else build_uncompiled_forward(name, uncompiled))(x) - x).square().mean()
        loss.backward()
    step_flops = counter.get_total_flops()
    # one clip: the default sampler's batch, the smallest input case's frame count and size
    _, evals, batch = DEFAULT_SAMPLERS[name]
    clip = torch.randn(batch, *CASES["4x3x16x32x32"][1:])
    with torch.no_grad():
        forward(clip)
        start = time.perf_counter()
        for _ in range(3):
            forward(clip)
        eval_s = (time.perf_counter() - start) / 3
    queue.put({"params": params, "forward_gflop": forward_flops / 1e9, "step_gflop": step_flops / 1e9,
               "step_s": step_s, "peak_mb": peak, "eval_s": eval_s, "clip_s": eval_s * evals})


def build_uncompiled_forward(name: str, model):
    """FlopCounterMode counts eager ops; a compiled model is counted through its original module."""
    ctx = torch.randn(8, CONTEXT_TOKENS, CONTEXT_DIM)
    mask = torch.ones(8, CONTEXT_TOKENS, dtype=torch.bool)
    return lambda x: model(x, torch.zeros(len(x)), ctx[:len(x)], mask[:len(x)])


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def run(name: str, shape: tuple, repeats: int) -> dict | None:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=measure, args=(name, shape, repeats, queue))
    proc.start()
    proc.join()
    return queue.get() if not queue.empty() else None


def main() -> None:
    parser = argparse.ArgumentParser(description="vidiff vs peers: speed and memory on this machine")
    parser.add_argument("--quick", action="store_true", help="small input case only, fewer repeats")
    parser.add_argument("--compile", action="store_true", help="also time vidiff under torch.compile")
    args = parser.parse_args()
    models = ["vidiff", *(["vidiff compiled"] if args.compile else []), "diffusers", "vdp"]
    cases = list(CASES.items())[:1 if args.quick else None]
    peak = matmul_peak_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 matmul peak {peak:.0f} GFLOP/s\n")
    clip_rows = {}
    for case, shape in cases:
        results = {}
        for name in models:
            results[name] = run(name, shape, 3 if args.quick or shape[-1] > 32 else 5)
            if results[name] is None:
                print(f"({name} failed on {case}; is it installed?)")
        ours = results["vidiff"]["step_s"]
        print(f"train step, input {case}")
        print("| model | params (M) | forward GFLOP | train-step GFLOP | train step (ms) | GFLOP/s | % of matmul peak "
              "| peak memory (MB) | vidiff is faster by |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, r in results.items():
            if r is None:
                continue
            rate = r["step_gflop"] / r["step_s"]
            print(f"| {name} | {r['params'] / 1e6:.2f} | {r['forward_gflop']:.1f} | {r['step_gflop']:.1f} "
                  f"| {r['step_s'] * 1000:.0f} | {rate:.0f} | {100 * rate / peak:.0f} % | {r['peak_mb']:.0f} "
                  f"| {r['step_s'] / ours:.2f}x |")
            clip_rows.setdefault(name, r)
        print()
    ours = clip_rows["vidiff"]["clip_s"]
    print("one 16x32x32 clip with each model's default sampler")
    print("| model | default sampler | evaluations x batch | ms per evaluation | s per clip | vidiff is faster by |")
    print("|---|---|---:|---:|---:|---:|")
    for name, r in clip_rows.items():
        sampler, evals, batch = DEFAULT_SAMPLERS[name]
        print(f"| {name} | {sampler} | {evals} x {batch} | {r['eval_s'] * 1000:.0f} | {r['clip_s']:.1f} "
              f"| {r['clip_s'] / ours:.1f}x |")


if __name__ == "__main__":
    import contextlib
    import io

    from results import publish
    tables = io.StringIO()
    with contextlib.redirect_stdout(tables):
        main()
    publish("peers", "vidiff against diffusers and video-diffusion-pytorch: speed and memory", tables.getvalue(),
            "python benchmarks/peers.py " + " ".join(sys.argv[1:]))
