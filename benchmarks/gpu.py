"""vidiff on a GPU against its peers: speed, FLOP utilisation and memory, same run, same card (a benchmark).

    python benchmarks/gpu.py                 # on a CUDA machine: writes docs/results/gpu.md
    python benchmarks/gpu.py --smoke         # tiny sizes on the CPU in seconds, eager only (the tests run it);
                                             # writes nothing unless --out is given

Rows (each in try/except: a crash or an out-of-memory is a row of the table, not the end of the run):
  matmul peak     the bf16 (CPU: fp32) matmul rate this card reaches. Two utilisations are reported: MFU
                  against the card's datasheet bf16 dense peak (DATASHEET_TFLOPS; the number papers
                  compare), and the share of the measured matmul rate (what this card can reach)
  models          one train step (forward, MSE, backward, fused AdamW) under bf16 autocast, eager and
                  torch.compile'd: ms/step, clips/s, TFLOP/s (torch's FlopCounterMode), MFU, peak memory.
                  vidiff pixel U-Net (configs/tiny-shapes.yaml), latent U-Net (the embedded model's
                  backbone), DiT-S and DiT-B widths; diffusers UNet3DConditionModel and
                  LatteTransformer3DModel; video-diffusion-pytorch's Unet3D when installed
  train           `vidiff train` end to end (Trainer: data, VAE latents, noise, EMA, logging) against
                  the same backbone's bare train step at the same batch
  sampling        clips/s of the embedded model at batch 1, 32 and 128 (its default sampler)
  largest batch   the largest power-of-two batch of a train step that fits in memory, per model
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(Path(__file__).parent))       # results.py, peers.py beside this script
CONTEXT_TOKENS, CONTEXT_DIM = 16, 128


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> float:
    """Seconds per call, after two warm-up calls (compilation, autotuning, allocator)."""
    fn(), fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


# bf16 dense tensor-core peaks from the vendors' datasheets (TFLOP/s), matched against the device name
DATASHEET_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                    "RTX 4090": 165.2, "RTX 3090": 71.0}


def datasheet_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in DATASHEET_TFLOPS.items() if k in name), None)


def matmul_peak(device: torch.device) -> tuple[float, str]:
    """(TFLOP/s, dtype name): the best of a few large matmuls."""
    dtype, n = (torch.bfloat16, 8192) if device.type == "cuda" else (torch.float32, 512)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    seconds = min(timed(lambda: a @ b, 5) for _ in range(3))
    return 2 * n ** 3 / seconds / 1e12, str(dtype).replace("torch.", "")


# models: name -> (module, forward(x) -> output, input shape (B, C, T, H, W)) --------------------------------
def vidiff_backbone(model_cfg):
    from vidiff.models import build_model
    return build_model(model_cfg).backbone


def vidiff_forward(model):
    def forward(x):
        ctx = torch.randn(len(x), CONTEXT_TOKENS, CONTEXT_DIM, device=x.device)
        return model(x, torch.zeros(len(x), device=x.device), ctx, torch.ones(len(x), CONTEXT_TOKENS, dtype=torch.bool,
                                                                             device=x.device))
    return forward


def build(name: str, smoke: bool):
    from vidiff.config import DiTConfig, ModelConfig, load_config
    from vidiff.checkpoint import DEFAULT_MODEL, read_config, resolve_checkpoint
    if name == "vidiff pixel U-Net":
        model = vidiff_backbone(load_config(ROOT / "configs/tiny-shapes.yaml").model)
        return model, vidiff_forward(model), (2, 3, 4, 16, 16) if smoke else (16, 3, 16, 64, 64)
    if name == "vidiff pixel U-Net 128px":
        model = vidiff_backbone(load_config(ROOT / "configs/tiny-shapes.yaml").model)
        return model, vidiff_forward(model), (2, 3, 4, 32, 32) if smoke else (8, 3, 16, 128, 128)
    if name == "vidiff latent U-Net":
        model = vidiff_backbone(read_config(resolve_checkpoint(DEFAULT_MODEL)).model)
        return model, lambda x: model(x, torch.zeros(len(x), device=x.device),
                                      torch.randn(len(x), CONTEXT_TOKENS, CONTEXT_DIM, device=x.device),
                                      torch.ones(len(x), CONTEXT_TOKENS, dtype=torch.bool, device=x.device),
                                      torch.zeros(len(x), 5, *x.shape[2:], device=x.device)), \
            (2, 4, 4, 8, 8) if smoke else (64, 4, 16, 8, 8)
    if name.startswith("vidiff DiT"):
        width = {"S": 384, "B": 768}[name[-1]]
        cfg = ModelConfig(type="dit", in_channels=4, dit=DiTConfig(width=64 if smoke else width, depth=2 if smoke else 12,
                                                                   head_dim=32 if smoke else 64))
        model = vidiff_backbone(cfg)
        return model, vidiff_forward(model), (2, 4, 4, 8, 8) if smoke else (8, 4, 16, 32, 32)
    if name == "diffusers UNet3D":
        from peers import diffusers_unet3d
        model = diffusers_unet3d()
        forward = lambda x: model(x, torch.full((len(x),), 500, device=x.device),
                                  torch.randn(len(x), CONTEXT_TOKENS, CONTEXT_DIM, device=x.device)).sample
        return model, forward, (2, 3, 4, 16, 16) if smoke else (16, 3, 16, 64, 64)
    if name == "diffusers Latte":
        from diffusers import LatteTransformer3DModel
        heads, layers = (2, 2) if smoke else (6, 12)
        model = LatteTransformer3DModel(num_attention_heads=heads, attention_head_dim=32 if smoke else 64, in_channels=4,
                                        out_channels=4, num_layers=layers, cross_attention_dim=heads * (32 if smoke else 64),
                                        sample_size=8 if smoke else 32, patch_size=2, norm_type="ada_norm_single",
                                        caption_channels=CONTEXT_DIM, video_length=4 if smoke else 16)
        forward = lambda x: model(x, torch.full((len(x),), 500, device=x.device),
                                  torch.randn(len(x), CONTEXT_TOKENS, CONTEXT_DIM, device=x.device)).sample
        return model, forward, (2, 4, 4, 8, 8) if smoke else (8, 4, 16, 32, 32)
    if name == "video-diffusion-pytorch":
        stub = types.ModuleType("torchvision")          # imported for its Trainer only; a 5 GB CUDA wheel here
        stub.transforms, stub.utils = types.SimpleNamespace(ToTensor=lambda: None), types.SimpleNamespace()
        sys.modules.setdefault("torchvision", stub)
        from video_diffusion_pytorch.video_diffusion_pytorch import Unet3D
        model = Unet3D(dim=32, dim_mults=(1, 2, 2), cond_dim=CONTEXT_DIM, use_bert_text_cond=False)
        forward = lambda x: model(x, torch.full((len(x),), 500, device=x.device),
                                  cond=torch.randn(len(x), CONTEXT_DIM, device=x.device))
        return model, forward, (2, 3, 4, 16, 16) if smoke else (16, 3, 16, 64, 64)
    raise ValueError(name)


MODELS = ["vidiff pixel U-Net", "vidiff pixel U-Net 128px", "vidiff latent U-Net", "vidiff DiT-S", "vidiff DiT-B",
          "diffusers UNet3D", "diffusers Latte", "video-diffusion-pytorch"]


def train_step_fn(model, forward, x, autocast):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step():
        with autocast:
            out = forward(x)
        loss = (out.float() - x).square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def step_flops(model, forward, x) -> float:
    """FLOPs of one train step (forward + backward), counted with attention on the math backend: its
    matmuls are counted on every device (the fused CPU kernel counts as 0, which undercounted a DiT)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        (forward(x).float() - x).square().mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def measure_model(name: str, args, device, autocast, peak: float, datasheet: float | None) -> list[str]:
    """Table rows of one model: eager, then compiled."""
    rows = []
    for compiled in (False, True) if not args.no_compile else (False,):
        label = f"{name}{' compiled' if compiled else ''}"
        try:
            torch.manual_seed(0)
            model, forward, shape = build(name, args.smoke)
            model = model.to(device).train()
            x = torch.randn(shape, device=device)
            flops = step_flops(model, forward, x)
            if compiled:
                model.compile()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            seconds = timed(train_step_fn(model, forward, x, autocast), args.repeats)
            memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
            rate = flops / seconds / 1e12
            rows.append(f"| {label} | {'x'.join(map(str, shape))} | {sum(p.numel() for p in model.parameters()) / 1e6:.1f} "
                        f"| {seconds * 1e3:.1f} | {shape[0] / seconds:.0f} | {rate:.1f} | "
                        f"{f'{100 * rate / datasheet:.0f} %' if datasheet else '—'} | {100 * rate / peak:.0f} % "
                        f"| {memory:.1f} |")
        except Exception as e:       # noqa: BLE001 - a crash is a result
            rows.append(f"| {label} | | | crash: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''} | | | | | |")
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def largest_batch(name: str, args, device, autocast) -> str:
    """The largest power-of-two batch whose train step runs (doubling until it fails)."""
    fits, batch, shape, error = 0, 1, None, ""
    while batch <= (4 if args.smoke else 4096):
        try:
            torch.manual_seed(0)
            model, forward, shape = build(name, args.smoke)
            model = model.to(device).train()
            train_step_fn(model, forward, torch.randn((batch, *shape[1:]), device=device), autocast)()
            sync()
            fits = batch
            batch *= 2
        except Exception as e:       # noqa: BLE001 - out of memory (or the kernels' limits) ends the search
            error = type(e).__name__
            break
        finally:
            model = forward = None
            if device.type == "cuda":
                torch.cuda.empty_cache()
    clip = "x".join(map(str, shape[1:])) if shape else ""
    return f"| {name} | {clip} | {fits or 'none'}{f' (then {error})' if error else ''} |"


def measure_train(args, device) -> list[str]:
    """`vidiff train` end to end on the embedded model's recipe against the bare train step of its backbone."""
    from vidiff.checkpoint import DEFAULT_MODEL, read_config, resolve_checkpoint
    from vidiff.training import Trainer
    from vidiff.training.diffusion import training_loss
    cfg = read_config(resolve_checkpoint(DEFAULT_MODEL))
    t = cfg.train
    t.vae, t.init_from, t.seed = str(DEFAULT_MODEL), "", 0
    t.batch_size, t.steps = (4, 6) if args.smoke else (64, 60)
    t.log_every, t.checkpoint_every, t.sample_every, t.time_limit_minutes = 20, 10**6, 10**6, 0.0
    cfg.data.workers = 0 if args.smoke else 6
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(cfg, Path(folder) / "run", progress=False)
        trainer.save = trainer.write_samples = lambda: None       # the step, not the checkpoint writes
        warm, total = 2, t.steps
        t.steps = warm                        # warm-up: the first steps allocate, tune and start the workers
        trainer.train()
        t.steps = total
        sync()
        start = time.perf_counter()
        trainer.train()
        sync()
        end_to_end = (total - warm) / (time.perf_counter() - start)
        batch = trainer.batch(0)
        x0 = trainer.task.to_model_space(batch)
        ids = trainer.model.tokenizer.encode(batch["caption"])
        null = trainer.model.tokenizer.empty(1)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else None
        generator = torch.Generator().manual_seed(0)

        def bare():
            loss = training_loss(trainer.model, cfg, x0, ids, null, generator, autocast=autocast)
            loss.backward()
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)
        model_only = 1 / timed(bare, args.repeats)
    return [f"| `vidiff train`, the embedded model's recipe, batch {t.batch_size} | {end_to_end:.1f} | {model_only:.1f} "
            f"| {100 * end_to_end / model_only:.0f} % |"]


def measure_sampling(args, device) -> list[str]:
    from vidiff.pipeline import SampleOptions, VideoPipeline
    rows = []
    for dtype in ("fp32", "bf16"):
        pipe = VideoPipeline.from_pretrained(device=device, torch_dtype=dtype)
        for batch in (1, 2) if args.smoke else (1, 32, 128):
            try:
                seconds = timed(lambda: pipe(["a red circle bouncing"] * batch, generator=torch.Generator().manual_seed(0),
                                             sampling=SampleOptions(2 if args.smoke else None, progress=False)),
                                1 if args.smoke else 3)
                rows.append(f"| {dtype} | {batch} | {seconds:.3f} | {batch / seconds:.0f} |")
            except Exception as e:   # noqa: BLE001
                rows.append(f"| {dtype} | {batch} | crash: {type(e).__name__} | |")
    return rows


def main() -> str:
    parser = argparse.ArgumentParser(description="vidiff against its peers on a GPU")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, on the CPU, in seconds")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--models", nargs="*", default=MODELS, help="which models (default: all)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per row")
    parser.add_argument("--out", type=Path, default=None, help="write the report here (default: docs/results/gpu.md "
                                                                "on a GPU; nothing with --smoke)")
    args = parser.parse_args()
    args.repeats = args.repeats or (1 if args.smoke else 10)
    args.no_compile = args.no_compile or args.smoke       # inductor's C++ builds alone would take minutes on a CPU
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    from vidiff.devices import allow_tf32
    allow_tf32()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    peak, peak_dtype = matmul_peak(device)
    datasheet = datasheet_peak(device)
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (smoke run)"
    lines = [f"{gpu}; torch {torch.__version__}, CUDA {torch.version.cuda}; datasheet bf16 dense peak "
             f"{f'{datasheet:.0f} TFLOP/s' if datasheet else 'unknown'}; measured {peak_dtype} matmul rate "
             f"{peak:.1f} TFLOP/s", "",
             "## One train step (bf16 autocast, fused AdamW)", "",
             "| model | input | params (M) | ms/step | clips/s | TFLOP/s | MFU (datasheet) | share of measured matmul "
             "| peak memory (GiB) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in args.models:
        lines += measure_model(name, args, device, autocast, peak, datasheet)
    lines += ["", "## `vidiff train` end to end against the model alone", "",
              "| run | end to end (steps/s) | model alone (steps/s) | share |", "|---|---:|---:|---:|"]
    try:
        lines += measure_train(args, device)
    except Exception:                # noqa: BLE001
        lines.append(f"| crash: {traceback.format_exc().splitlines()[-1][:150]} | | | |")
    lines += ["", "## Sampling with the embedded model (its default sampler)", "",
              "| dtype | batch | s per call | clips/s |", "|---|---:|---:|---:|"]
    lines += measure_sampling(args, device)
    lines += ["", "## Largest batch of a train step that fits (powers of two)", "",
              "| model | clip | largest batch |", "|---|---|---:|"]
    lines += [largest_batch(name, args, device, autocast) for name in args.models]
    body = "\n".join(lines) + "\n"
    from results import publish, stamp
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"# vidiff on a GPU\n\n_{stamp()}_\n\n{body}")
        print(body + f"\nwrote {args.out}")
    elif not args.smoke:
        publish("gpu", "vidiff on a GPU against its peers", body, "python benchmarks/gpu.py " + " ".join(sys.argv[1:]))
    else:
        print(body)
    return body


if __name__ == "__main__":
    main()
