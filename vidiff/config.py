"""Configuration as nested dataclasses: YAML/JSON in, validated, unknown keys rejected, saved beside
every checkpoint and sufficient to rebuild the model."""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .errors import VidiffError

COLOURS = {  # the synthetic world's named palette (RGB)
    "red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 240), "yellow": (240, 220, 40),
    "magenta": (220, 50, 220), "cyan": (40, 220, 230), "white": (240, 240, 240), "orange": (250, 140, 20),
}
SHAPES = ("circle", "square", "triangle")
CAPTION_WORDS = ("a", "and", "bouncing")


@dataclass
class TextConfig:
    vocab: list[str] = field(default_factory=lambda: [*CAPTION_WORDS, *COLOURS, *SHAPES])
    max_length: int = 16      # tokens including the leading <bos>
    dim: int = 128
    layers: int = 2
    heads: int = 4


@dataclass
class ModelConfig:
    type: str = "unet3d"
    in_channels: int = 3
    base_channels: int = 64
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 2])
    num_res_blocks: int = 1
    attention_levels: list[int] = field(default_factory=lambda: [1, 2])  # spatial self/cross-attn here
    head_dim: int = 32
    groups: int = 16          # GroupNorm groups
    # type: dit (space-time transformer; see vidiff/models/dit.py)
    width: int = 256
    depth: int = 8
    patch: list[int] = field(default_factory=lambda: [1, 2, 2])   # frames, height, width per token
    attention: str = "factorized"   # factorized (space, then time) | full (all tokens)
    activation_checkpointing: bool = False
    text: TextConfig = field(default_factory=TextConfig)

    def size_multiples(self) -> tuple[int, int]:
        """(frames, height/width) must be multiples of these for this backbone."""
        if self.type == "dit":
            return self.patch[0], max(self.patch[1], self.patch[2])
        return 1, 2 ** (len(self.channel_mults) - 1)


@dataclass
class DiffusionConfig:
    schedule: str = "cosine"
    prediction: str = "v"
    loss_weighting: str = "min_snr"
    time_sampling: str = "uniform"   # uniform | logit_normal (SD3's choice for flow matching)
    space: str = "pixel"             # pixel | latent (set by training with train.vae)


@dataclass
class DataConfig:
    type: str = "shapes"
    frames: int = 16
    size: int = 32
    min_objects: int = 1
    max_objects: int = 2
    colours: list[str] = field(default_factory=lambda: list(COLOURS)[:6])
    shapes: list[str] = field(default_factory=lambda: list(SHAPES))
    radius: list[float] = field(default_factory=lambda: [0.12, 0.2])   # of the frame size
    speed: list[float] = field(default_factory=lambda: [0.02, 0.06])   # frame sizes per frame
    gravity: float = 0.0      # frame sizes per frame^2, pulling down (+y)
    num_clips: int = 0        # 0: an endless stream; N: cycle over N fixed clips (overfitting, tests)
    seed: int = 0
    # type: folder (real videos; see vidiff/data/video_folder.py)
    path: str = ""            # folder of videos/images with captions.csv|jsonl or <name>.txt
    frame_stride: int = 1     # take every n-th source frame...
    fps: float = 0.0          # ...or resample to this frame rate (0: use frame_stride)
    crop: str = "center"      # center | random square crop after scaling the short side to `size`
    image_every: int = 4      # with images in the folder, every n-th batch is a batch of 1-frame images
    workers: int = 0          # DataLoader worker processes decoding ahead of the training step
    fixed_clips: bool = False # one fixed clip and crop per file (no temporal/crop augmentation), so latent
                              # training (train.vae) encodes each file once and reuses its cached latent


@dataclass
class TrainConfig:
    steps: int = 1000
    time_limit_minutes: float = 0.0   # also stop (and checkpoint) once this much training time has passed; 0 = off
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    lr_decay: str = "cosine"  # cosine | constant
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    cfg_dropout: float = 0.1  # share of captions replaced by the empty prompt
    precision: str = "auto"   # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    parallel: str = "ddp"     # with torchrun: ddp (replicas) | fsdp (FSDP2 sharding); batch_size is global
    vae: str = ""             # a `vidiff train-vae` run: train on its latents (latent diffusion)
    seed: int = 0
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 500
    keep_last: int = 3
    sample_steps: int = 25
    sample_guidance: float = 3.0


@dataclass
class VAEConfig:
    """The video VAE (vidiff/models/vae.py) and its reconstruction loss, trained by `vidiff train-vae`."""
    in_channels: int = 3
    channels: int = 32
    channel_mults: list[int] = field(default_factory=lambda: [1, 2, 2])   # 3 levels: 4x spatial compression
    latent_channels: int = 4
    temporal_downsample: int = 1   # 1 | 4 (then clips need 1 + 4k frames)
    kl_weight: float = 1e-6
    mse_weight: float = 1.0        # squared error next to L1: L1 alone lets sparse objects collapse into background
    gradient_weight: float = 1.0   # L1 on spatial and temporal finite differences: sharp edges, steady motion
    adversarial_weight: float = 0.0   # hinge GAN term against a 3D PatchGAN, balanced per step as in VQGAN; 0 = off
    adversarial_start: int = 0        # step from which the discriminator trains and the term applies
    discriminator_channels: int = 32
    latent_scale: float = 1.0      # latents are multiplied by this for diffusion (set to 1/std when training on them)

    def spatial_factor(self) -> int:
        return 2 ** (len(self.channel_mults) - 1)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


CHOICES = {
    "model.type": ("unet3d", "dit"), "model.attention": ("factorized", "full"), "diffusion.schedule": ("cosine", "linear", "rectified"),
    "diffusion.prediction": ("eps", "x0", "v", "flow"), "diffusion.loss_weighting": ("none", "min_snr"),
    "diffusion.time_sampling": ("uniform", "logit_normal"), "diffusion.space": ("pixel", "latent"),
    "data.type": ("shapes", "folder"), "vae.temporal_downsample": (1, 4), "data.crop": ("center", "random"), "train.lr_decay": ("cosine", "constant"),
    "train.precision": ("auto", "fp32", "bf16"), "train.parallel": ("ddp", "fsdp"),
}


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise VidiffError(f"config section '{where or 'top level'}' must be a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise VidiffError(f"unknown config key '{where}{unknown[0]}'; valid keys here: {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in values.items():
        key, hint = f"{where}{name}", hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key + ".")
        else:
            kwargs[name] = _coerce(value, hint, key)
    return cls(**kwargs)


def _coerce(value, hint, key: str):
    origin = typing.get_origin(hint)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise VidiffError(f"config key '{key}' must be a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(v, item, key) for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):   # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise VidiffError(f"config key '{key}' must be {hint.__name__}, got {value!r}")
    return value


def _validate_shapes(d: DataConfig, m: ModelConfig) -> None:
    for colour in d.colours:
        if colour not in COLOURS:
            raise VidiffError(f"unknown colour '{colour}' in data.colours; the palette has: {', '.join(COLOURS)}")
    for shape in d.shapes:
        if shape not in SHAPES:
            raise VidiffError(f"unknown shape '{shape}' in data.shapes; choose from: {', '.join(SHAPES)}")
    if not 1 <= d.min_objects <= d.max_objects <= len(d.colours):
        raise VidiffError("data needs 1 <= min_objects <= max_objects <= number of colours "
                          f"(got {d.min_objects}, {d.max_objects}, {len(d.colours)} colours)")
    missing = sorted({*d.colours, *d.shapes, "a", "and"} - set(m.text.vocab))
    if missing:
        raise VidiffError(f"model.text.vocab lacks caption words {missing}; add them to the vocabulary")


def validate(cfg: Config) -> Config:
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in choices:
            raise VidiffError(f"config key '{key}' is '{value}'; choose one of: {', '.join(map(str, choices))}")
    d, m, t = cfg.data, cfg.model, cfg.train
    if d.type == "shapes":
        _validate_shapes(d, m)
    if d.frames < 1 or d.size < 8:
        raise VidiffError(f"data needs frames >= 1 and size >= 8 (got frames={d.frames}, size={d.size})")
    if m.type == "dit":
        if len(m.patch) != 3 or min(m.patch) < 1 or m.width % m.head_dim or m.head_dim % 16 or m.depth < 1:
            raise VidiffError("a dit needs model.patch [frames, height, width] >= 1, model.head_dim a multiple "
                              "of 16 dividing model.width, and model.depth >= 1")
    else:
        if any(not 0 <= lvl < len(m.channel_mults) for lvl in m.attention_levels):
            raise VidiffError(f"model.attention_levels {m.attention_levels} must index the {len(m.channel_mults)} levels")
        if any(m.base_channels * k % m.groups for k in m.channel_mults) or m.base_channels * min(m.channel_mults) % m.head_dim:
            raise VidiffError("model channel widths must be divisible by model.groups and model.head_dim")
    frames_multiple, size_multiple = m.size_multiples()
    frames, size = d.frames, d.size
    if cfg.diffusion.space == "latent":   # the backbone sees latents: sizes divided by the VAE's compression
        v = cfg.vae
        if (d.frames - 1) % v.temporal_downsample or d.size % v.spatial_factor():
            raise VidiffError(f"data.frames must be 1 + {v.temporal_downsample}k and data.size a multiple of "
                              f"{v.spatial_factor()} for the VAE")
        frames, size = 1 + (d.frames - 1) // v.temporal_downsample, d.size // v.spatial_factor()
    if size % size_multiple or frames % frames_multiple:
        raise VidiffError(f"data.size {d.size} must give a multiple of {size_multiple} and data.frames {d.frames} "
                          f"a multiple of {frames_multiple} at the {m.type}'s input")
    if d.frame_stride < 1 or d.fps < 0 or d.image_every < 0 or d.workers < 0:
        raise VidiffError("data needs frame_stride >= 1 and fps, image_every, workers >= 0")
    if t.steps < 1 or t.batch_size < 1 or t.grad_accum < 1 or not 0 <= t.cfg_dropout < 1 or not t.time_limit_minutes >= 0:
        raise VidiffError("train needs steps, batch_size, grad_accum >= 1, 0 <= cfg_dropout < 1 and time_limit_minutes >= 0")
    return cfg


def config_from_dict(values: dict) -> Config:
    return validate(_build(Config, values or {}, ""))


def load_config(path: str | Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise VidiffError(f"config file '{path}' not found; pass an existing YAML or JSON file")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise VidiffError(f"config file '{path}' is not valid YAML: {str(e).splitlines()[0]}") from None
    return config_from_dict(values)
