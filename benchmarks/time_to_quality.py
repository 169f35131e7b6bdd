"""Time to quality: the best video per CPU-minute, vidiff against its peers (a benchmark, not a test).

    pip install diffusers                                                                # peer 1
    pip install --no-deps video-diffusion-pytorch einops-exts rotary-embedding-torch     # peer 2
    python benchmarks/time_to_quality.py [--minutes 10 30 60] [--num 12] [--threads 1]

    # or the arms split over the cores, one process (one thread) each, then one report:
    python benchmarks/time_to_quality.py --arms diffusers,vidiff-latent --minutes 30 60 --num 6 --work /tmp/a --no-report &
    python benchmarks/time_to_quality.py --arms vdp --minutes 30 60 --num 6 --work /tmp/b --no-report
    python benchmarks/time_to_quality.py --merge /tmp/a /tmp/b

Every arm trains from scratch on vidiff's synthetic bouncing-shapes clips (16x32x32, batch 4) for
the same training minutes on this machine's CPU, is sampled with its own default sampler on the same
held-out prompts, and is scored by `vidiff eval`'s metrics (scored at each budget in --minutes; one
run per arm, continued from budget to budget):
  vidiff latent  the shipped recipe (configs/tiny-shapes-latent-unet.yaml) on the shipped VAE's latents
                 (the VAE is reused, its own training time is not counted: see the row below)
  vidiff pixel   the pixel U-Net recipe (configs/tiny-shapes.yaml): nothing pre-trained
  diffusers      UNet3DConditionModel (the ModelScope text-to-video U-Net, blocks 32/64/64) with
                 DDPMScheduler's defaults in training; sampled as TextToVideoSDPipeline does (DDIM 50
                 steps, guidance 9)
  vdp            lucidrains' video-diffusion-pytorch Unet3D (dim 32, mults 1/2/2) in its
                 GaussianDiffusion (L1 loss, its default); sampled by its ancestral loop. timesteps=100
                 instead of its default 1000, which would take hours to sample here.
Peers read the captions through the same word ids as vidiff and learn their own text embedding
(diffusers: a token sequence for cross-attention; vdp: a mean-pooled vector, its `cond`), with 10 %
of captions dropped for guidance. Peer learning rates are their trainers' defaults (1e-4); vidiff
uses its recipe's. Learning rates stay constant after warm-up (no decay), so a budget can be extended.
Writes docs/results/time_to_quality.md and time_to_quality.png (a sample sheet per arm at the
largest budget).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from vidiff.config import load_config                                       # noqa: E402
from vidiff.data import ShapesDataset                                        # noqa: E402
from vidiff.data.io import tile, to_uint8                                    # noqa: E402
from vidiff.data.splits import HELD_OUT                                      # noqa: E402
from vidiff.evaluation.evaluate import score_clips                           # noqa: E402
from vidiff.models.text import WordTokenizer                                 # noqa: E402

BATCH, PEER_LR, PEER_WARMUP, CFG_DROPOUT, CONTEXT_DIM = 4, 1e-4, 200, 0.1, 128
SAMPLER_NAMES = {"ddim": "DDIM", "dpm++2m": "DPM++(2M)", "heun": "Heun", "euler": "Euler"}
ARM_KEYS = {"vidiff latent U-Net": "vidiff-latent", "vidiff pixel U-Net": "vidiff-pixel",
            "diffusers UNet3DConditionModel": "diffusers", "video-diffusion-pytorch Unet3D": "vdp"}
METRICS = [("viewer_pass", "viewer pass"), ("permanence", "permanence"), ("fidelity", "fidelity"),
           ("shape_stability", "shape stab."), ("physics_error_px", "physics px"), ("dynamic_degree", "dynamic"),
           ("flicker", "flicker"), ("fvd_shapes", "FVD-shapes")]


class PeerArm:
    """A peer's model, its text embedding and its optimizer, trained by our loop on our clips."""

    def __init__(self, data_cfg, tokenizer: WordTokenizer, seed: int):
        torch.manual_seed(seed)
        self.tokenizer, self.data = tokenizer, ShapesDataset(data_cfg)
        self.cfg = data_cfg
        self.build()
        params = [p for m in self.modules() for p in m.parameters()]
        self.optimizer = torch.optim.AdamW(params, lr=PEER_LR)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / PEER_WARMUP))
        self.step, self.seconds, self.rng = 0, 0.0, np.random.default_rng(seed)

    def ids(self, captions: list[str], drop: bool) -> torch.Tensor:
        ids = self.tokenizer.encode(captions)
        if drop:
            keep = torch.from_numpy(self.rng.random(len(captions)) >= CFG_DROPOUT)
            ids = torch.where(keep[:, None], ids, self.tokenizer.empty(len(captions)))
        return ids

    def train_for(self, seconds: float) -> None:
        while self.seconds < seconds:
            tick = time.perf_counter()
            items = [self.data[self.step * BATCH + j] for j in range(BATCH)]
            video = torch.stack([it["video"] for it in items])
            loss = self.loss(video, self.ids([it["caption"] for it in items], drop=True))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for m in self.modules() for p in m.parameters()], 1.0)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            self.seconds += time.perf_counter() - tick


class DiffusersArm(PeerArm):
    name = "diffusers UNet3DConditionModel"
    sampler = "DDIM 50 steps, guidance 9 (TextToVideoSDPipeline's defaults)"

    def build(self) -> None:
        from diffusers import DDIMScheduler, DDPMScheduler, UNet3DConditionModel
        self.unet = UNet3DConditionModel(
            sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64), layers_per_block=1,
            down_block_types=("CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"),
            cross_attention_dim=CONTEXT_DIM, attention_head_dim=8, norm_num_groups=16)
        self.words = nn.Embedding(len(self.tokenizer), CONTEXT_DIM)
        self.position = nn.Parameter(torch.randn(self.tokenizer.max_length, CONTEXT_DIM) * 0.02)
        self.noise = DDPMScheduler()
        self.ddim = DDIMScheduler.from_config(self.noise.config)

    def modules(self):
        return [self.unet, self.words, nn.ParameterList([self.position])]

    def context(self, ids: torch.Tensor) -> torch.Tensor:
        return self.words(ids) + self.position

    def loss(self, video, ids):
        noise = torch.randn_like(video)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (len(video),))
        noisy = self.noise.add_noise(video, noise, t)
        return (self.unet(noisy, t, self.context(ids)).sample - noise).square().mean()

    @torch.no_grad()
    def sample(self, captions: list[str], seed: int) -> list[np.ndarray]:
        self.ddim.set_timesteps(50)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(len(captions), 3, self.cfg.frames, self.cfg.size, self.cfg.size, generator=g)
        context = torch.cat([self.context(self.tokenizer.encode(captions)),
                             self.context(self.tokenizer.empty(len(captions)))])
        for t in self.ddim.timesteps:
            cond, uncond = self.unet(torch.cat([x, x]), t, context).sample.chunk(2)
            x = self.ddim.step(uncond + 9.0 * (cond - uncond), t, x).prev_sample
        return list(to_uint8(x))


class VdpArm(PeerArm):
    name = "video-diffusion-pytorch Unet3D"
    sampler = "GaussianDiffusion ancestral loop, 100 steps (timesteps=100), cond_scale 1 (its default)"

    def build(self) -> None:
        stub = types.ModuleType("torchvision")   # imported for its Trainer only; the wheel is a 5 GB CUDA download here
        stub.transforms, stub.utils = types.SimpleNamespace(ToTensor=lambda: None), types.SimpleNamespace()
        sys.modules.setdefault("torchvision", stub)
        import video_diffusion_pytorch.video_diffusion_pytorch as vdp
        from video_diffusion_pytorch.video_diffusion_pytorch import GaussianDiffusion, Unet3D
        vdp.tqdm = lambda steps, **_: steps                 # its per-step sampling bar would flood the log
        self.unet = Unet3D(dim=32, dim_mults=(1, 2, 2), cond_dim=CONTEXT_DIM, use_bert_text_cond=False)
        self.diffusion = GaussianDiffusion(self.unet, image_size=self.cfg.size, num_frames=self.cfg.frames, timesteps=100)
        self.words = nn.EmbeddingBag(len(self.tokenizer), CONTEXT_DIM, mode="mean", padding_idx=0)

    def modules(self):
        return [self.diffusion, self.words]

    def loss(self, video, ids):
        # dropped captions use the Unet3D's own learned null condition (null_cond_prob), not the empty prompt
        return self.diffusion((video + 1) / 2, cond=self.words(ids), null_cond_prob=CFG_DROPOUT)

    def ids(self, captions, drop):
        return self.tokenizer.encode(captions)          # vdp drops the condition itself

    @torch.no_grad()
    def sample(self, captions: list[str], seed: int) -> list[np.ndarray]:
        torch.manual_seed(seed)
        x = self.diffusion.sample(cond=self.words(self.tokenizer.encode(captions)))   # in [0, 1]
        return list(to_uint8(x * 2 - 1))


class VidiffArm:
    """A vidiff recipe trained by vidiff's own Trainer, continued from budget to budget."""

    def __init__(self, name: str, config: str, work: Path, vae: str = ""):
        self.name, self.run = name, work / name.replace(" ", "-")
        self.cfg = load_config(ROOT / config)
        tc = self.cfg.train
        tc.steps, tc.sample_every, tc.checkpoint_every, tc.keep_last = 10**6, 10**9, 10**9, 1
        tc.vae = vae
        self.sampler = "its defaults"      # named after training, from the pipeline that samples it
        self.seconds, self.step = 0.0, 0

    def train_for(self, seconds: float) -> None:
        from vidiff.training import Trainer
        self.cfg.train.time_limit_minutes = seconds / 60
        trainer = Trainer(self.cfg, self.run, resume=self.run.exists(), progress=False)
        trainer.train()
        self.seconds, self.step = trainer.seconds, trainer.step

    def sample(self, captions: list[str], seed: int) -> list[np.ndarray]:
        from vidiff.pipeline import SampleOptions, VideoPipeline
        pipe = VideoPipeline.from_pretrained(self.run)
        d = pipe.defaults()
        self.sampler = f"{SAMPLER_NAMES.get(d.sampler, d.sampler)} {d.steps} steps ({d.spacing}), guidance {d.guidance:g} (its defaults)"
        return [pipe(c, generator=torch.Generator().manual_seed(seed + i), sampling=SampleOptions(progress=False)).pixels[0]
                for i, c in enumerate(captions)]


def build_arms(names: list[str], data_cfg, tokenizer, work: Path) -> list:
    arms = []
    for name in names:
        if name == "vidiff-latent":
            arms.append(VidiffArm("vidiff latent U-Net", "configs/tiny-shapes-latent-unet.yaml", work, vae="default"))
        elif name == "vidiff-pixel":
            arms.append(VidiffArm("vidiff pixel U-Net", "configs/tiny-shapes.yaml", work))
        elif name == "diffusers":
            arms.append(DiffusersArm(data_cfg, tokenizer, seed=0))
        elif name == "vdp":
            arms.append(VdpArm(data_cfg, tokenizer, seed=0))
        else:
            raise SystemExit(f"unknown arm '{name}'; choose from vidiff-latent, vidiff-pixel, diffusers, vdp")
    return arms


def table(results: list[dict], budgets: list[float]) -> str:
    lines = []
    for budget in budgets:
        rows = [r for r in results if r["minutes"] == budget]
        lines += [f"\n**{budget:g} training minutes**\n",
                  "| arm | steps | sampler | s per clip | " + " | ".join(label for _, label in METRICS) + " |",
                  "|---|---:|---|---:|" + "---:|" * len(METRICS)]
        for r in rows:
            lines.append(f"| {r['arm']} | {r['steps']} | {r['sampler']} | {r['clip_s']:.1f} | "
                         + " | ".join(f"{r['summary'].get(k, float('nan')):.3f}" for k, _ in METRICS) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[10.0])
    ap.add_argument("--num", type=int, default=12, help="held-out prompts scored per arm and budget")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--arms", default="vidiff-latent,vidiff-pixel,diffusers,vdp")
    ap.add_argument("--work", default="/tmp/vidiff-time-to-quality", help="run folders (a fresh one is needed)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results"), help="where the sample sheet goes")
    ap.add_argument("--no-report", action="store_true",
                    help="keep results in --work only (arms split across processes, one core each; see --merge)")
    ap.add_argument("--merge", nargs="+", metavar="WORK", help="write the report from these --work folders, train nothing")
    args = ap.parse_args()
    if args.merge:
        return merge(args)
    torch.set_num_threads(args.threads)
    work, out = Path(args.work), Path(args.out)
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"--work '{work}' is not empty; give a fresh folder")
    work.mkdir(parents=True, exist_ok=True)
    base = load_config(ROOT / "configs/tiny-shapes-latent-unet.yaml")
    data_cfg, text = base.data, base.model.text
    tokenizer = WordTokenizer(text.vocab, text.max_length)
    held_out = ShapesDataset(data_cfg)
    captions = [held_out[HELD_OUT + i]["caption"] for i in range(args.num)]
    from vidiff.evaluation.fvd import reference_clips
    reference = reference_clips(data_cfg)
    budgets = sorted(args.minutes)
    results, sheets = [], {}
    (work / "captions.json").write_text(json.dumps(captions))
    for arm in build_arms(args.arms.split(","), data_cfg, tokenizer, work):
        for budget in budgets:
            arm.train_for(budget * 60)
            start = time.perf_counter()
            clips = arm.sample(captions, seed=0)
            clip_s = (time.perf_counter() - start) / len(clips)
            summary, _ = score_clips(clips, captions, data_cfg, reference=reference)
            results.append({"arm": arm.name, "minutes": budget, "steps": arm.step, "train_s": arm.seconds,
                            "sampler": arm.sampler, "clip_s": clip_s, "summary": summary})
            print(json.dumps({k: v for k, v in results[-1].items() if k != "summary"}),
                  {k: round(summary.get(k, float("nan")), 3) for k, _ in METRICS}, flush=True)
            sheets[arm.name] = np.stack(clips[:6])
            (work / "results.json").write_text(json.dumps(results, indent=1))
            np.savez_compressed(work / "sheets.npz", **sheets)
    if not args.no_report:
        write_report(out, results, budgets, sheets, captions, args)


def merge(args) -> None:
    """One report from several processes' --work folders (each ran some of the arms, same budgets and prompts)."""
    results, sheets, captions, args.merged_arms = [], {}, None, []
    for folder in map(Path, args.merge):
        if not (folder / "results.json").exists():
            raise SystemExit(f"'{folder}' has no results.json; give the --work folder of a finished run")
        got = json.loads((folder / "results.json").read_text())
        args.merged_arms.append(list(dict.fromkeys(ARM_KEYS.get(r["arm"], r["arm"]) for r in got)))
        results += got
        got = json.loads((folder / "captions.json").read_text())
        if captions is not None and got != captions:
            raise SystemExit(f"'{folder}' scored other prompts than the first folder; merge runs with the same --num")
        captions = got
        with np.load(folder / "sheets.npz") as saved:
            sheets.update({name: saved[name] for name in saved.files})
    budgets = sorted({r["minutes"] for r in results})
    rank = list(ARM_KEYS).index            # ours first, then the peers, whatever the folders' order
    results.sort(key=lambda r: rank(r["arm"]))
    sheets = dict(sorted(sheets.items(), key=lambda kv: rank(kv[0])))
    args.num = len(captions)
    write_report(Path(args.out), results, budgets, sheets, captions, args)


def write_report(out: Path, results: list[dict], budgets: list[float], sheets: dict, captions: list[str], args) -> None:
    from results import sample_sheet
    out.mkdir(parents=True, exist_ok=True)
    # per arm: 6 prompts side by side, frames 0, 5, 10, 15 down
    rows = [(f"{name} ({budgets[-1]:g} min)",
             np.concatenate([np.concatenate(list(c), axis=0) for c in clips[:, [0, 5, 10, 15]]], axis=1))
            for name, clips in sheets.items()]
    sample_sheet(rows, out / "time_to_quality.png")
    write_table(results, budgets, captions, args)


def write_table(results: list[dict], budgets: list[float], captions: list[str], args) -> None:
    from results import publish
    body = "\n".join([
        f"{args.threads} thread(s). Every arm trains from scratch on the same synthetic clips for the same training "
        f"minutes, is sampled with its own default sampler on the same {args.num} held-out prompts (seed 0), and "
        "is scored by `vidiff eval`'s metrics. Arms, the peers' settings and what is not counted: the docstring "
        "of the script.",
        "",
        "Prompts: " + "; ".join(captions[:6]) + (" ..." if len(captions) > 6 else ""),
        table(results, budgets),
        "",
        f"![samples](time_to_quality.png) — frames 0, 5, 10, 15 (down) of the first 6 prompts (across), "
        f"after {budgets[-1]:g} minutes.",
    ])
    run = f"python benchmarks/time_to_quality.py --minutes {' '.join(f'{b:g}' for b in budgets)} --num {args.num} " \
          f"--threads {args.threads}"
    if args.merge:      # one process per folder, side by side, then the merge
        runs = [f"{run} --arms {','.join(arms)} --work {folder} --no-report &"
                for folder, arms in zip(args.merge, args.merged_arms)]
        run = " ".join(runs) + " wait; python benchmarks/time_to_quality.py --merge " + " ".join(args.merge)
    publish("time_to_quality", "Time to quality: vidiff against its peers", body, run)


if __name__ == "__main__":
    main()
