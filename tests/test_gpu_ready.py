"""What a GPU needs, proven on the CPU: attention chunked past the kernels' batch limit, no host sync in
a training step, reduced-precision inference, torch.compile, activation checkpointing, generators."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_config_dict
from vidiff.config import config_from_dict
from vidiff.devices import generator_on, randn
from vidiff.models import build_model, layers
from vidiff.models.layers import Attention
from vidiff.pipeline import SampleOptions, VideoPipeline
from vidiff.training import Trainer


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every weight drawn at random: zero-initialised output layers would make any two runs agree."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


@pytest.mark.parametrize("cross", [False, True])
def test_attention_over_more_sequences_than_the_kernels_take_is_chunked_exactly(monkeypatch, cross):
    torch.manual_seed(0)
    attn = randomised(Attention(32, 16, context_dim=24 if cross else None, rotary=not cross))
    x = torch.randn(10, 5, 32, requires_grad=True)
    context = torch.randn(10, 3, 24) if cross else None
    mask = torch.tensor([[True, True, False]] * 9 + [[True, False, False]]) if cross else None

    def run():
        out = attn(x, context, mask)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(),
                                    [x, *attn.parameters()])
        return out, grads
    whole, whole_grads = run()
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(layers.F, "scaled_dot_product_attention",
                        lambda q, *a, **k: calls.append(q.shape[0]) or original(q, *a, **k))
    monkeypatch.setattr(layers, "MAX_ATTENTION_BATCH", 4)
    chunked, chunked_grads = run()
    assert calls == [4, 4, 2]                                       # 10 sequences in chunks of at most 4
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)
    for a, b in zip(chunked_grads, whole_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_unet_with_attention_chunked_and_activations_recomputed_gives_the_same_output_and_gradients(monkeypatch):
    """The U-Net's temporal attention runs over B*H*W sequences (65,536 at batch 16 of 64x64 crashed an
    H200's fast kernels): a lowered limit chunks it; activation checkpointing recomputes in backward."""
    values = tiny_config_dict()
    cfg = config_from_dict(values)
    x, log_snr = torch.randn(2, 3, 4, 16, 16), torch.tensor([0.5, -1.0])

    def run(checkpointing: bool):
        cfg.model.unet3d.activation_checkpointing = checkpointing
        torch.manual_seed(0)
        model = randomised(build_model(cfg.model)).train()
        ids = model.tokenizer.encode(["a red circle bouncing", "a blue square bouncing"])
        out = model(x, log_snr, ids=ids)
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]
    plain, plain_grads = run(False)
    monkeypatch.setattr(layers, "MAX_ATTENTION_BATCH", 100)        # temporal attention: 2 * 16 * 16 = 512 sequences
    for checkpointing in (False, True):
        out, grads = run(checkpointing)
        torch.testing.assert_close(out, plain, rtol=0, atol=1e-5)
        for a, b in zip(grads, plain_grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


TRAINING_OPTIONS = {   # every option that adds work to a step: each must stay free of host reads
    "plain": {},
    "frame conditioning": {"model": {"frame_conditioning": True}},
    "overlap weights": {"data": {"shapes": {"min_objects": 2, "max_objects": 2, "radius": [0.25, 0.3]}},
                        "train": {"overlap_weight": 4.0}},
    "strides": {"model": {"stride_conditioning": True}, "data": {"shapes": {"strides": [1, 2]}}},
    "flow matching, logit-normal times": {"diffusion": {"prediction": "flow", "schedule": "rectified",
                                                        "time_sampling": "logit_normal"}},
    "grad accumulation, bf16": {"train": {"grad_accum": 2, "precision": "bf16"}},
}


HOST_DRAWS = {"draw_masks"}     # functions that read CPU tensors of the CPU generator, never a device's


def merged(base: dict, extra: dict) -> dict:
    out = {**base}
    for key, value in extra.items():
        out[key] = merged(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


@pytest.mark.parametrize("option", list(TRAINING_OPTIONS))
def test_training_reads_the_device_once_per_log_interval(tmp_path, monkeypatch, option):
    """No host sync inside a step: losses stay tensors, a non-finite step is skipped on a device flag;
    the host reads the numbers once per train.log_every steps, whatever the training options."""
    values = merged(tiny_config_dict(steps=12, log_every=4, checkpoint_every=1000), TRAINING_OPTIONS[option])
    trainer = Trainer(config_from_dict(values), tmp_path / "run", progress=False)
    reads = []

    def host_draw() -> bool:
        """Inside draw_masks: its picks are CPU-generator draws on the host by design (no device tensor)."""
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_name in HOST_DRAWS:
                return True
            frame = frame.f_back
        return False

    def counting(name, original):
        def read(self, *args, **kwargs):
            if not host_draw():
                reads.append(name)
            return original(self, *args, **kwargs)
        return read

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    step, in_steps = trainer.train_step, []

    def counted_step():
        before = len(reads)
        out = step()
        in_steps.append(len(reads) - before)
        return out
    trainer.train_step = counted_step
    trainer.save = trainer.write_samples = lambda: None               # checkpoints may read; steps may not
    trainer.train()
    assert in_steps == [0] * 12, in_steps                          # not one read inside a training step
    assert reads.count("tolist") == 3, reads                       # steps 4, 8 and 12: one read each
    assert len(reads) <= 5, reads          # and around the loop: the DataLoader's base seed, the summary's count
    assert [h["step"] for h in trainer.history] == [4, 8, 12]
    assert all(isinstance(h["loss"], float) for h in trainer.history)


def test_a_non_finite_step_changes_neither_weights_nor_average_and_is_counted(tmp_path, monkeypatch):
    from vidiff.training import diffusion
    trainer = Trainer(config_from_dict(tiny_config_dict(steps=20)), tmp_path / "run", progress=False)
    trainer.train_step()                                              # a real step: AdamW and EMA have state
    weights = [p.clone() for p in trainer.model.parameters()]
    average = [p.clone() for p in trainer.ema.model.parameters()]
    real = diffusion.training_loss
    monkeypatch.setattr(diffusion, "training_loss", lambda *a, **k: real(*a, **k) * float("inf"))
    trainer.train_step()
    assert trainer.bad_steps == 1
    assert all(torch.equal(a, b) for a, b in zip(weights, trainer.model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(average, trainer.ema.model.parameters()))
    monkeypatch.setattr(diffusion, "training_loss", real)
    trainer.train_step()
    assert trainer.bad_steps == 1 and not all(torch.equal(a, b) for a, b in zip(weights, trainer.model.parameters()))


def test_bf16_inference_makes_the_fp32_video_and_a_cast_model_samples():
    prompts = ["a red circle bouncing", "a blue square and a yellow triangle bouncing"]
    make = lambda pipe: pipe(prompts, generator=torch.Generator().manual_seed(0),
                              sampling=SampleOptions(progress=False)).pixels.astype(float)
    reference = make(VideoPipeline.from_pretrained())
    pipe = VideoPipeline.from_pretrained(torch_dtype="bf16")
    assert pipe.model.backbone.stem.weight.dtype == torch.bfloat16 and pipe.bundle.codec.module is not None
    assert next(pipe.bundle.codec.module.parameters()).dtype == torch.bfloat16
    half = make(pipe)
    assert abs(half - reference).mean() < 2.0, abs(half - reference).mean()     # of 255
    cast = VideoPipeline.from_pretrained()
    cast.model.to(torch.bfloat16)                                 # the diffusers habit: the whole model cast
    assert abs(make(cast) - reference).mean() < 8.0


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
def test_compiled_pipeline_makes_the_eager_video(monkeypatch):
    """torch.compile (inductor, a C++ build on the CPU: about a minute) of a randomly weighted model."""
    import torch._inductor.config
    monkeypatch.setattr(torch._inductor.config, "compile_threads", 1)   # no worker pool left running after it
    limit = sys.getrecursionlimit()          # inductor raises it for good; the rest of the run keeps its own
    cfg = config_from_dict(tiny_config_dict())
    model = randomised(build_model(cfg.model, cfg.trained_words()))
    from vidiff.models import LatentCodec
    from vidiff.models.own import own_bundle
    pipe = VideoPipeline(own_bundle(model, cfg, LatentCodec(), "a random model"))
    make = lambda: pipe("a red circle bouncing", generator=torch.Generator().manual_seed(0),
                        sampling=SampleOptions(2, 2.0, progress=False)).pixels.astype(int)
    eager = make()
    assert eager.std() > 10                                        # not a blank video that any model would make
    model.backbone.compile()
    try:
        compiled = make()
    finally:
        sys.setrecursionlimit(limit)
    assert abs(compiled - eager).max() <= 2
    assert list(model.state_dict()) == list(build_model(cfg.model, cfg.trained_words()).state_dict())


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
def test_train_compile_traces_the_whole_step_without_a_graph_break(tmp_path, monkeypatch):
    """train.compile compiles the backbone in place; fullgraph=True fails on any graph break (a host sync or
    a branch on a tensor's value in forward or backward). aot_eager: the same graphs, no C++ build."""
    from vidiff.training import trainer as trainer_module
    compiled = []
    monkeypatch.setattr(trainer_module, "compile_module",
                        lambda m: compiled.append(m) or m.compile(backend="aot_eager", fullgraph=True))
    plain = Trainer(config_from_dict(tiny_config_dict(steps=2, checkpoint_every=1000)), tmp_path / "plain",
                    progress=False)
    plain.train()
    run = Trainer(config_from_dict(tiny_config_dict(steps=2, checkpoint_every=1000, compile=True)), tmp_path / "run",
                  progress=False)
    run.train()
    assert compiled == [run.model.backbone]
    assert [h["loss"] for h in run.history] == pytest.approx([h["loss"] for h in plain.history], rel=1e-4)
    assert list(run.model.state_dict()) == list(plain.model.state_dict())   # checkpoints keep their names


def test_generators_draw_where_they_live():
    cpu = torch.Generator().manual_seed(3)
    assert generator_on(cpu, torch.device("cpu")) is cpu and generator_on(None, torch.device("cpu")) is None
    a = randn((2, 3), torch.Generator().manual_seed(3), torch.device("cpu"))
    assert torch.equal(a, torch.randn((2, 3), generator=torch.Generator().manual_seed(3)))   # CPU runs unchanged
    if torch.cuda.is_available():
        on_gpu = generator_on(cpu, torch.device("cuda"))
        assert on_gpu.device.type == "cuda" and on_gpu.initial_seed() == cpu.initial_seed()


def test_cli_dtype_errors_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vidiff", "generate", "a red circle bouncing", "--dtype", "fp8",
                        "--out", str(tmp_path / "a.mp4")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == "error: unknown dtype 'fp8'; choose one of: fp32, bf16, fp16"
    assert not (tmp_path / "a.mp4").exists()


@pytest.mark.slow   # in CI's second pass (.ci/run), not the default suite
def test_gpu_benchmark_smoke_run_writes_every_section(tmp_path):
    from pathlib import Path
    root = Path(__file__).parents[1]
    out = tmp_path / "gpu.md"
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "gpu.py"), "--smoke", "--out", str(out), "--models",
                        "vidiff pixel U-Net", "vidiff DiT-S"], capture_output=True, text=True, timeout=600, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    text = out.read_text()
    for section in ("matmul rate", "MFU (datasheet)", "One train step", "end to end", "Sampling with the embedded model", "Largest batch"):
        assert section in text, section
    rows = [line for line in text.splitlines() if line.startswith("| vidiff") or line.startswith("| `vidiff train`")]
    assert len(rows) == 2 + 1 + 2 and not any("crash" in row for row in rows), rows


def test_the_benchmarks_flop_count_includes_attention():
    """FLOPs of forward + backward through attention alone, against the analytic count: QK^T and AV
    forward (4 B H L^2 d), and four matmuls of the same size in backward (8 B H L^2 d). The fused CPU
    kernel counts 0, so a count without the math backend would miss it."""
    import importlib.util
    root = Path(__file__).parents[1]
    spec = importlib.util.spec_from_file_location("gpu_bench", root / "benchmarks" / "gpu.py")
    bench = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(root / "benchmarks"))
    spec.loader.exec_module(bench)
    b, h, n, d = 2, 3, 16, 8

    class Attend(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.k = torch.nn.Parameter(torch.randn(b, h, n, d))
            self.v = torch.nn.Parameter(torch.randn(b, h, n, d))

        def forward(self, q):
            return torch.nn.functional.scaled_dot_product_attention(q, self.k, self.v)

    model = Attend()
    q = torch.randn(b, h, n, d, requires_grad=True)
    assert bench.step_flops(model, model, q) == 12 * b * h * n * n * d
