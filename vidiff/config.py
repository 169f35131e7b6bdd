"""Configuration as nested dataclasses: YAML/JSON in, checked, unknown keys rejected, saved beside every
checkpoint and sufficient to rebuild the model.

Each backbone and each data source has its own sub-section (`model.unet3d`, `model.dit`, `data.shapes`,
`data.folder`); `type` picks which one is used, and a saved config keeps only that one. This module
checks structure, types and numeric ranges; which names a `type`, `schedule` or `prediction` may take
is read from the registries that define them (vidiff/registry.py, vidiff/training/options.py).
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .errors import VidiffError
from .world import COLOURS, DEFAULT_COLOURS, SHAPES, vocabulary

INF = math.inf


def bounded(default, low: float = -INF, high: float = INF, open_low: bool = False, open_high: bool = False):
    """A numeric field with an allowed range, checked on load."""
    return field(default=default, metadata={"range": (low, high, open_low, open_high)})


MAX_STRIDE = 8   # the largest frame stride a stride-conditioned model takes
MAX_GRAVITY = 0.1   # frame sizes per frame^2: a ball dropped from the top lands in 4.5 frames (1e9 emptied every clip)
MAX_SEED = 2**32 - 1   # training draws seed step k with seed * 1_000_003 + k, which must fit torch's 64-bit seed

def bounded_list(default: list, low: float = -INF, open_low: bool = False):
    """A list of numbers, each at least `low` (or above it, if open_low)."""
    return field(default_factory=lambda: list(default), metadata={"range": (low, INF, open_low, False)})


def positive(default):
    return bounded(default, 0, open_low=True)


@dataclass
class TextConfig:
    vocab: list[str] = field(default_factory=lambda: vocabulary(DEFAULT_COLOURS, SHAPES))
    max_length: int = bounded(16, 2)     # tokens including the leading <bos>
    dim: int = bounded(128, 1)
    layers: int = bounded(2, 1)
    heads: int = bounded(4, 1)


@dataclass
class UNetConfig:
    """vidiff/models/unet3d.py: factorized space-time 3D U-Net."""
    base_channels: int = bounded(64, 1)
    channel_mults: list[int] = bounded_list([1, 2, 2], 1)
    num_res_blocks: int = bounded(1, 1)
    attention_levels: list[int] = bounded_list([1, 2], 0)   # levels with spatial self/cross-attention
    head_dim: int = bounded(32, 1)
    groups: int = bounded(16, 1)           # GroupNorm groups
    activation_checkpointing: bool = False  # recompute each block's activations in backward: less memory, ~30 % more time


@dataclass
class DiTConfig:
    """vidiff/models/dit.py: space-time diffusion transformer."""
    width: int = bounded(256, 16)
    depth: int = bounded(8, 1)
    head_dim: int = bounded(32, 16)
    patch: list[int] = bounded_list([1, 2, 2], 1)        # frames, height, width per token
    attention: str = "factorized"          # factorized (space, then time) | full (all tokens)
    activation_checkpointing: bool = False


@dataclass
class ModelConfig:
    type: str = "unet3d"                   # a key of vidiff.models.BACKBONES
    in_channels: int = bounded(3, 1)       # 3 for pixels; the VAE's latent_channels for latent diffusion
    unet3d: UNetConfig = field(default_factory=UNetConfig)
    dit: DiTConfig = field(default_factory=DiTConfig)
    text: TextConfig = field(default_factory=TextConfig)
    frame_conditioning: bool = False   # also takes known frames + their mask (image-to-video, extension,
                                       # interpolation); trained with train.frame_masks
    stride_conditioning: bool = False  # also takes the clip's frame stride (data.shapes.strides), SVD's fps
                                       # conditioning: keyframes far apart for hierarchical long video
    pretrained: str = ""               # a diffusers-format directory (Wan 2.1) to fine-tune: its architecture,
                                       # not this section's, is the model (docs/open-models.md)
    pretrained_checkpointing: bool = True   # activation checkpointing of the pretrained transformer (vidiff's own
                                            # backbones have theirs in their sections)
    blocks_to_swap: int = bounded(0, 0)     # a pretrained transformer's last N blocks kept on the host, each brought
                                            # to the device only while it runs (musubi-tuner's --blocks_to_swap)
    offload_activations: bool = False       # the checkpointed block inputs kept on the host (musubi-tuner's
                                            # --gradient_checkpointing_cpu_offload); needs pretrained_checkpointing
    fp8_base: bool = False                  # a pretrained transformer's frozen block weights stored in float8, upcast
                                            # per layer (musubi-tuner's --fp8_base): half of bf16's memory


@dataclass
class DiffusionConfig:
    schedule: str = "cosine"
    prediction: str = "v"
    loss_weighting: str = "min_snr"
    time_sampling: str = "uniform"   # uniform | logit_normal (SD3's choice for flow matching)
    shift: float = bounded(1.0, 0.01)   # the schedule's log-SNR lowered by 2 log(shift) at every time, in training
                                        # and sampling (> 1: more steps at high noise; diffusion/schedules.py)
    guidance: float = bounded(3.0, 0)      # the classifier-free guidance scale this model samples with unless told
                                           # (chosen per model: benchmarks/sampling_sweep.py)
    guidance_interval: list[float] = bounded_list([], 0)   # [low, high]: guide only at sigma in (low, high]
                                                          # (Kynkaeaenniemi et al. 2024); [] = at every step
    history_guidance: float = bounded(1.0, 0)   # and its history guidance scale when given frames condition a
                                                 # masked-frame model (diffusion/guidance.py); 1: none
    sampler: str = "ddim"                  # and its sampler, step count and step spacing (vidiff.diffusion's
    sampling_steps: int = bounded(25, 1)   # SAMPLERS and SPACINGS): what `generate`, `eval`, `extend`,
    spacing: str = "uniform"               # `interpolate` and the web UI use unless told
    distilled_steps: int = bounded(0, 0)   # a distilled student (`vidiff distill`): sample with this many DDIM
                                           # steps and no classifier-free guidance (its teacher's is built in)


@dataclass
class ShapesConfig:
    """The synthetic bouncing-shapes world (vidiff/data/synthetic.py)."""
    min_objects: int = bounded(1, 1)
    max_objects: int = bounded(2, 1)
    colours: list[str] = field(default_factory=lambda: list(DEFAULT_COLOURS))
    shapes: list[str] = field(default_factory=lambda: list(SHAPES))
    radius: list[float] = bounded_list([0.12, 0.2], 0, open_low=True)    # of the frame size
    speed: list[float] = bounded_list([0.02, 0.06], 0)                   # frame sizes per frame
    gravity: float = bounded(0.0, -MAX_GRAVITY, MAX_GRAVITY)   # frame sizes per frame^2, pulling down (+y)
    restitution: float = bounded(1.0, 0, 1)   # wall and floor bounces: outgoing / incoming speed (1: elastic)
    collisions: bool = False  # objects bounce off one another (bounding circles), momentum conserved, mass ~ area
    collision_restitution: float = bounded(1.0, 0, 1)   # of those collisions (1: elastic)
    min_gap: float = bounded(0.0, 0)   # redraw clips where two objects come closer than this (frame sizes,
                                       # edge to edge) in any frame: no overlaps to learn merging from
    num_clips: int = bounded(0, 0)   # 0: an endless stream; N: cycle over N fixed clips (overfitting, tests)
    exclude: list[str] = field(default_factory=list)   # "colour shape" pairs never drawn in clips (held-out
                                                        # combinations: compositional generalisation)
    image_every: int = bounded(0, 0)   # with frames > 1: every n-th micro-batch is 1-frame stills of the whole world
                                       # (exclude and num_clips do not apply): joint training with plentiful images
    strides: list[int] = bounded_list([1], 1)   # frame strides a clip is drawn at, one per clip uniformly: with
                                                # model.stride_conditioning, the sparse keyframes of hierarchical long video


@dataclass
class SourceConfig:
    """One more directory of a folder dataset (data.folder.sources), with its own repeats and frame counts."""
    path: str = ""
    repeats: int = bounded(1, 1)              # each of its files counts this many times per epoch
    frames: list[int] = bounded_list([], 1)   # its target frame counts (empty: data.folder.frames)
    frame_stride: int = bounded(0, 0)         # 0: data.folder.frame_stride


@dataclass
class FolderConfig:
    """A folder of real videos and images with captions (vidiff/data/video_folder.py)."""
    path: str = ""            # folder of videos/images with captions.csv|jsonl or <name>.txt
    sources: list[SourceConfig] = field(default_factory=list)   # more directories (path, repeats, frames, frame_stride)
    frames: list[int] = bounded_list([], 1)   # target frame counts, the frame buckets: a video gives the longest
                                              # it holds (empty: [data.frames]); images are 1-frame clips
    frame_stride: int = bounded(1, 1)     # take every n-th source frame...
    fps: float = bounded(0.0, 0)          # ...or resample to this frame rate (0: use frame_stride)
    crop: str = "center"      # center | random crop to the clip's bucket (its aspect ratio at data.size^2 pixels)
    image_every: int = bounded(4, 0)      # with images in the folder, every n-th batch is a batch of 1-frame images
    fixed_clips: bool = False # one fixed clip and crop per file (no temporal/crop augmentation), so latent
                              # training (train.vae) encodes each file once and reuses its cached latent
    cache: str = ""           # where a pretrained model's run keeps its encoded clips and captions, reused by
                              # every run and resume (empty: $VIDIFF_CACHE or ~/.cache/vidiff/encoded)


@dataclass
class DataConfig:
    type: str = "shapes"      # a key of vidiff.data.DATASETS
    frames: int = bounded(16, 1)
    size: int = bounded(32, 8)    # square clips; folder data: the pixel area size x size, at each file's aspect ratio
    workers: int = bounded(0, 0)   # DataLoader worker processes decoding ahead of the training step
    seed: int = bounded(0, 0, MAX_SEED)   # clip i (and its crop) is a pure function of (seed, i)
    shapes: ShapesConfig = field(default_factory=ShapesConfig)
    folder: FolderConfig = field(default_factory=FolderConfig)


@dataclass
class FrameMaskConfig:
    """Which frames a frame-conditioned model is shown, per training sample: weights of each kind of
    mask (vidiff/diffusion/conditioning.py), normalised to sum 1. `none` is also the dropout of the
    frame condition (a text-to-video sample), which makes guidance on it possible."""
    none: float = bounded(0.3, 0)       # text-to-video
    first: float = bounded(0.25, 0)     # image-to-video
    first_k: float = bounded(0.2, 0)    # extension: the first 2..T/2 frames
    every_k: float = bounded(0.15, 0)   # interpolation: frames 0, k, 2k, ... for k in 2..5
    random: float = bounded(0.1, 0)     # each frame known with probability 1/2
    noise: float = bounded(0.1, 0)      # known frames get Gaussian noise of std U(0, noise): robust to
                                        # generated frames and to per-frame vs in-clip VAE latents


@dataclass
class DistillConfig:
    """`vidiff distill`: progressive distillation of `teacher` to diffusion.distilled_steps steps."""
    teacher: str = ""                       # the model distilled (a run, checkpoint or `default`)
    teacher_steps: int = bounded(32, 2)     # the teacher's DDIM steps; halved each round
    guidance: float = 3.0                   # the teacher's classifier-free guidance, built into the student


@dataclass
class LoRAConfig:
    """train.lora: train low-rank adapters (vidiff/models/lora.py) on the frozen model instead of its weights."""
    rank: int = bounded(0, 0)       # 0: off
    alpha: float = bounded(0.0, 0)  # the update is scaled by alpha / rank (0: alpha = rank)
    targets: list[str] = field(default_factory=lambda: ["backbone.*.to_q", "backbone.*.to_kv", "backbone.*.to_out"])
                                    # globs over module names (linear layers); `temporal`: the frame-mixing
                                    # layers only, as AnimateDiff's motion LoRAs


@dataclass
class TrainConfig:
    steps: int = bounded(1000, 1)
    time_limit_minutes: float = bounded(0.0, 0)   # also stop (and checkpoint) after this much training time; 0 = off
    batch_size: int = bounded(4, 1)
    grad_accum: int = bounded(1, 1)
    lr: float = positive(3e-4)
    weight_decay: float = bounded(0.0, 0)
    warmup_steps: int = bounded(100, 0)
    lr_decay: str = "cosine"  # cosine | constant
    ema_decay: float = bounded(0.999, 0, 1)
    grad_clip: float = positive(1.0)
    cfg_dropout: float = bounded(0.1, 0, 1, open_high=True)   # share of captions replaced by the empty prompt
    precision: str = "auto"   # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False     # torch.compile the backbone (minutes of compiling first; then faster steps on a GPU)
    parallel: str = "ddp"     # with torchrun: ddp (replicas) | fsdp (FSDP2 sharding); batch_size is global |
                              # sequence (a DiT: each clip's frames split across the processes, 1/N of its activations each)
    vae: str = ""             # a `vidiff train-vae` run: train on its latents (latent diffusion)
    seed: int = bounded(0, 0, MAX_SEED)
    data_offset: int = bounded(0, 0)   # the training stream starts at micro-batch N: a continued run sees new clips
    log_every: int = bounded(10, 1)
    sample_every: int = bounded(500, 0)        # steps between sample sheets (0: never)
    checkpoint_every: int = bounded(500, 1)
    keep_last: int = bounded(3, 1)
    sample_steps: int = bounded(0, 0)          # the sample sheets' steps (0: the model's diffusion.sampling_steps)...
    sample_guidance: float = bounded(-1.0, -1)  # ...and guidance (-1: its diffusion.guidance); its sampler and spacing
    expert: str = ""          # a two-expert model (Wan 2.2 A14B): train `high` (the noisy steps) or `low`, each on its
                              # side of the timestep boundary
    sample_prompts: list[str] = field(default_factory=list)   # a pretrained model's run: prompts sampled with the
                                                               # run's weights every sample_every steps into a sheet
    init_from: str = ""       # start from this model's weights (a run, checkpoint or `default`); new layers keep their init;
                              # from an image model (data.frames 1) the temporal layers start as identity (inflation)
    trainable: str = "all"    # all | temporal (the frame-mixing layers, AnimateDiff-style) | a glob of parameter names;
                              # the rest is frozen: bit-identical after training and not in the optimizer
    overlap_weight: float = bounded(0.0, 0)   # shapes world: the loss counts pixels where two objects overlap
                              # (and 1 px around) 1 + this many times: the world draws one in front, a blend is wrong
    frame_masks: FrameMaskConfig = field(default_factory=FrameMaskConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


DECODE_TILE = 32   # latent pixels a side the VAE decodes at once (decode_tiled): 128 px at 4x, bounded memory
DISPLAY_SCALE = 4   # written videos are enlarged this many times (nearest neighbour): 32-px frames are tiny on a screen
RECONSTRUCTION_WEIGHT = 2.0   # w_r of reconstruction guidance (a sampling method for given frames): the one default


@dataclass
class VAEConfig:
    """The video VAE (vidiff/models/vae.py) and its reconstruction loss, trained by `vidiff train-vae`."""
    in_channels: int = bounded(3, 1)
    channels: int = bounded(32, 1)
    channel_mults: list[int] = bounded_list([1, 2, 2], 1)   # 3 levels: 4x spatial compression
    latent_channels: int = bounded(4, 1)
    temporal_downsample: int = 1   # 1 | 4 (then clips need 1 + 4k frames)
    kl_weight: float = bounded(1e-6, 0)
    mse_weight: float = bounded(1.0, 0)       # squared error next to L1: L1 alone lets sparse objects collapse into background
    gradient_weight: float = bounded(1.0, 0)  # L1 on spatial and temporal finite differences: sharp edges, steady motion
    overlap_weight: float = bounded(0.0, 0)   # shapes world: pixels where two objects overlap count 1 + this much
    latent_noise: float = bounded(0.0, 0)     # decoder robustness: latents noised by a std up to this (per clip)
    adversarial_weight: float = bounded(0.0, 0)   # hinge GAN term against a 3D PatchGAN, balanced per step as in VQGAN; 0 = off
    adversarial_start: int = bounded(0, 0)        # step from which the discriminator trains and the term applies
    discriminator_channels: int = bounded(32, 2)

    def spatial_factor(self) -> int:
        return 2 ** (len(self.channel_mults) - 1)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)

    def trained_words(self) -> list[str]:
        """The words a prompt may use: those the training data shows. Vocabulary entries the data never
        uses have untrained embeddings, and a prompt with one would silently ignore it."""
        if self.data.type == "shapes":
            words = set(vocabulary(self.data.shapes.colours, self.data.shapes.shapes))
            return [w for w in self.model.text.vocab if w in words]
        return list(self.model.text.vocab)

    def trained_strides(self) -> list[int]:
        """The frame strides the training data shows clips at (a stride-conditioned model makes those)."""
        return sorted(set(self.data.shapes.strides)) if self.data.type == "shapes" else [1]

    def to_dict(self) -> dict:
        """Everything, less the sub-sections of the backbone and data source not chosen."""
        values = asdict(self)
        for section, chosen in (("model", self.model.type), ("data", self.data.type)):
            for name in SUBSECTIONS[section]:
                if name != chosen:
                    values[section].pop(name)
        if self.model.pretrained:           # its directory is its architecture: no U-Net fields to mislead
            for key in OWN_MODEL_KEYS:
                values["model"].pop(key, None)
        return values

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


SUBSECTIONS = {"model": ("unet3d", "dit"), "data": ("shapes", "folder")}
# model keys of vidiff's own backbones: a pretrained model's architecture is its directory's
OWN_MODEL_KEYS = ("type", "in_channels", "unet3d", "dit", "text", "frame_conditioning", "stride_conditioning")


def build_section(cls, values: dict, where: str = ""):
    """The dataclass `cls` from a mapping; `where` prefixes key names in errors (e.g. 'vae.')."""
    if not isinstance(values, dict):
        raise VidiffError(f"config section '{where.rstrip('.') or 'top level'}' must be a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise VidiffError(f"unknown config key '{where}{unknown[0]}'; valid keys here: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in values.items():
        key, hint = f"{where}{name}", hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build_section(hint, value, key + ".")
        else:
            kwargs[name] = _coerce(value, hint, key)
            if "range" in fields[name].metadata:
                _check_range(kwargs[name], fields[name].metadata["range"], key)
    return cls(**kwargs)


def _coerce(value, hint, key: str):
    origin = typing.get_origin(hint)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise VidiffError(f"config key '{key}' must be a list, got {value!r}")
        (item,) = typing.get_args(hint)
        if dataclasses.is_dataclass(item):
            return [build_section(item, v, f"{key}[{i}].") for i, v in enumerate(value)]
        return [_coerce(v, item, key) for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):   # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise VidiffError(f"config key '{key}' must be {hint.__name__}, got {value!r}")
    if hint is float and not math.isfinite(value):
        raise VidiffError(f"config key '{key}' must be a finite number, got {value!r}")
    return value


def _check_range(value, bounds, key: str, what: str | None = None) -> None:
    low, high, open_low, open_high = bounds
    for v in value if isinstance(value, list) else [value]:
        if v != v or v < low or v > high or (open_low and v == low) or (open_high and v == high):   # v != v: NaN
            lo = f"{'>' if open_low else '>='} {low:g}" if low > -INF else ""
            hi = f"{'<' if open_high else '<='} {high:g}" if high < INF else ""
            raise VidiffError(f"{what or f'config key {key!r}'} must be {' and '.join(s for s in (lo, hi) if s)}, got {v!r}")


def override(cfg: Config, key: str, value, flag: str | None = None) -> Config:
    """Set dotted `key` (e.g. "train.steps") to `value` with the checks a recipe's value gets on load;
    `flag`: the command-line option that gave it, named in the error."""
    *path, name = key.split(".")
    section = cfg
    for part in path:
        section = getattr(section, part)
    what = f"{flag} ({key})" if flag else None
    try:
        value = _coerce(value, typing.get_type_hints(type(section))[name], key)
    except VidiffError as e:
        raise VidiffError(str(e).replace(f"config key '{key}'", what or f"config key '{key}'")) from None
    bounds = {f.name: f for f in dataclasses.fields(section)}[name].metadata.get("range")
    if bounds is not None:
        _check_range(value, bounds, key, what)
    setattr(section, name, value)
    return cfg


def _check_shapes(d: DataConfig, m: ModelConfig) -> None:
    s = d.shapes
    for colour in s.colours:
        if colour not in COLOURS:
            raise VidiffError(f"unknown colour '{colour}' in data.shapes.colours; the palette has: {', '.join(COLOURS)}")
    for shape in s.shapes:
        if shape not in SHAPES:
            raise VidiffError(f"unknown shape '{shape}' in data.shapes.shapes; choose from: {', '.join(SHAPES)}")
    if len(set(s.colours)) != len(s.colours) or not s.shapes:
        raise VidiffError("data.shapes.colours must not repeat a colour, and data.shapes.shapes needs a shape")
    if not s.min_objects <= s.max_objects <= len(s.colours):
        raise VidiffError("data.shapes needs 1 <= min_objects <= max_objects <= number of colours "
                          f"(got {s.min_objects}, {s.max_objects}, {len(s.colours)} colours)")
    for name in ("radius", "speed"):
        pair = getattr(s, name)
        if len(pair) != 2 or pair[0] > pair[1]:
            raise VidiffError(f"data.shapes.{name} must be [low, high] with low <= high, got {pair}")
    for pair in s.exclude:
        words = pair.split()
        if len(words) != 2 or words[0] not in s.colours or words[1] not in s.shapes:
            raise VidiffError(f"data.shapes.exclude takes 'colour shape' pairs of this world, got '{pair}'")
    for colour in s.colours:
        if all(f"{colour} {shape}" in s.exclude for shape in s.shapes):
            raise VidiffError(f"data.shapes.exclude leaves no shape for '{colour}'")
    if s.image_every and d.frames == 1:
        raise VidiffError("data.shapes.image_every mixes stills into video training; this world's clips are stills already")
    if not s.strides or max(s.strides) > MAX_STRIDE:
        raise VidiffError(f"data.shapes.strides must be 1 to {MAX_STRIDE} frames, got {s.strides}")
    if s.strides != [1] and not m.stride_conditioning:
        raise VidiffError("data.shapes.strides other than [1] need model.stride_conditioning: true "
                          "(else the model cannot tell fast clips from strided ones)")
    if s.radius[1] >= 0.5:
        raise VidiffError(f"data.shapes.radius must stay below 0.5 of the frame, got {s.radius}")
    missing = sorted(set(vocabulary(s.colours, s.shapes)) - set(m.text.vocab))
    if missing:
        raise VidiffError(f"model.text.vocab lacks caption words {missing}; add them to the vocabulary")


def check(cfg: Config) -> Config:
    """Cross-field checks that need no registry: the data's world and vocabulary, list lengths."""
    if cfg.data.type == "shapes":
        _check_shapes(cfg.data, cfg.model)
    if len(cfg.model.dit.patch) != 3:
        raise VidiffError(f"model.dit.patch must be [frames, height, width], got {cfg.model.dit.patch}")
    interval = cfg.diffusion.guidance_interval
    if interval and (len(interval) != 2 or not interval[0] < interval[1]):
        raise VidiffError(f"diffusion.guidance_interval must be [] or [low, high] sigmas with low < high, "
                          f"got {interval}")
    if not cfg.model.unet3d.channel_mults or not cfg.vae.channel_mults:
        raise VidiffError("model.unet3d.channel_mults and vae.channel_mults need at least one level")
    if cfg.train.sample_prompts and not cfg.model.pretrained:
        raise VidiffError("train.sample_prompts is for a pretrained model's run; vidiff's own sample sheets show "
                          "held-out captions of its data")
    if cfg.train.expert and (cfg.train.expert not in ("high", "low") or not cfg.model.pretrained):
        raise VidiffError(f"train.expert picks one expert of a pretrained two-expert model (Wan 2.2 A14B): high or low, "
                          f"got {cfg.train.expert!r}" + ("" if cfg.model.pretrained else " without model.pretrained"))
    if cfg.train.expert and cfg.train.sample_prompts:
        raise VidiffError("train.sample_prompts with train.expert is not supported yet: the sheet needs both experts on "
                          "the device (sample with --model RUN after training)")
    if cfg.model.offload_activations and not (cfg.model.pretrained and cfg.model.pretrained_checkpointing):
        raise VidiffError("model.offload_activations keeps a pretrained transformer's checkpointed block inputs on the "
                          "host: it needs model.pretrained and model.pretrained_checkpointing")
    if cfg.model.fp8_base and not (cfg.model.pretrained and cfg.train.lora.rank):
        raise VidiffError("model.fp8_base stores a pretrained transformer's frozen weights in float8: for a LoRA run "
                          "(model.pretrained and train.lora); a full fine-tune trains those weights")
    if cfg.model.blocks_to_swap and not cfg.model.pretrained:
        raise VidiffError("model.blocks_to_swap streams a pretrained transformer's blocks (model.pretrained); "
                          "vidiff's own backbones fit their devices")
    if cfg.model.pretrained:
        default = ModelConfig()
        changed = [k for k in OWN_MODEL_KEYS if getattr(cfg.model, k) != getattr(default, k)]
        if changed:
            raise VidiffError(f"model.{changed[0]} describes vidiff's own backbones; with model.pretrained the "
                              "directory is the architecture: remove it")
    if cfg.train.parallel == "sequence" and (cfg.model.type != "dit" or cfg.model.pretrained):
        raise VidiffError("train.parallel: sequence splits a DiT's tokens across processes (model.type: dit); "
                          "use ddp or fsdp for this model")
    return cfg


def config_from_dict(values: dict) -> Config:
    """Build and check a config. Names chosen from registries are checked by registry.validate."""
    return check(build_section(Config, values or {}))


def load_config(path: str | Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise VidiffError(f"config file '{path}' not found; pass an existing YAML or JSON file")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise VidiffError(f"config file '{path}' is not valid YAML: {str(e).splitlines()[0]}") from None
    if not values:                  # an empty file would silently train the default recipe
        raise VidiffError(f"config file '{path}' is empty; start from one of configs/*.yaml")
    return config_from_dict(values)
