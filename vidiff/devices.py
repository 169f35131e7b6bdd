"""Where tensors live and in what precision: random draws on the generator's device, inference dtypes,
autocast, TF32 and torch.compile. Everything here is a no-op on a CPU run in float32, so the CPU
results stay bit-identical while a GPU run gets what users of the peers expect of it."""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from .errors import VidiffError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """'bf16' | 'fp16' | 'fp32' (or a torch dtype among them; None: fp32) -> torch dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise VidiffError(f"unknown dtype '{dtype}'; choose one of: {', '.join(DTYPES)}")


def autocast(dtype: torch.dtype, device: torch.device):
    """Autocast to `dtype` on `device` for reduced-precision inference or training; a null context in fp32.
    Weights may already be in `dtype`: autocast still runs norms and softmax in float32, and lets float32
    tensors made inside the model (noise-level and position features) meet reduced-precision weights."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def allow_tf32() -> None:
    """Let float32 matmuls and convolutions use TF32 tensor cores on NVIDIA GPUs (about 8x the
    float32 rate, with a 10-bit mantissa that diffusion training and sampling tolerate). No-op elsewhere."""
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def generator_on(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """A generator that draws on `device`: the one given, if it already does, else a new one on `device`
    seeded by the next draw of the one given. A CPU run keeps its own generator (results unchanged); a
    GPU run draws its full-size noise where the tensor lives, reproducible for a given device and seed,
    and two calls in one step give two different streams (seeding from initial_seed() repeated them)."""
    device = torch.device(device)
    if generator is None or generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device).manual_seed(seed)


def to_device(t: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A host tensor made in a training step (masks, times, token ids, loss weights) on `device` without
    the host waiting: to a GPU through pinned memory, an asynchronous copy (from pageable memory a
    copy blocks until the GPU has done all queued work)."""
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, dtype, non_blocking=True)
    return t.to(device, dtype)


NOISE_STRIDE = 1_000_003    # sample j of a batch drawn with seed s gets the stream s * stride + 8 j + k


def sample_randn(shape, generator: torch.Generator | None, samples: range, device: torch.device,
                 dtype=torch.float32, stream: int = 0) -> torch.Tensor:
    """Full-size standard normal draws for `samples` (indices into a global batch), each from its own
    generator on `device`, seeded by (the batch generator's seed, sample index, stream): a process draws
    its own samples only, instead of the whole global batch to slice (memory and time that grew with
    the process count), and N processes still draw exactly what one would. shape: one sample's."""
    base = generator.initial_seed() if generator is not None else 0
    return torch.stack([torch.randn(shape, device=device, dtype=dtype, generator=torch.Generator(device).manual_seed(
        (base * NOISE_STRIDE + 8 * j + stream) % 2**63)) for j in samples])


def randn(shape, generator: torch.Generator | None, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    """Standard normal draws from `generator` on the generator's own device (a CPU generator draws on the
    CPU, as every vidiff seed always has; a CUDA generator on its GPU), then moved to `device`."""
    where = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=where, dtype=dtype).to(device, non_blocking=True)


def compile_module(module: nn.Module) -> nn.Module:
    """torch.compile `module` in place (nn.Module.compile): its state_dict keys stay those of the plain
    module, so checkpoints written while compiled load anywhere."""
    module.compile()
    return module
