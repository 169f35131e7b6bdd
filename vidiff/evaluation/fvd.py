"""Fréchet video distance on features of a small 3D-conv network that vidiff trains on its own
synthetic world — call it FVD-shapes, not FVD.

Standard FVD (Unterthiner et al. 2018) embeds videos with an I3D network trained on Kinetics-400;
its numbers are comparable across papers but need downloaded weights, and Kinetics features know
nothing of bouncing shapes. FVD-shapes uses the same Fréchet distance between Gaussian fits of
feature sets, on 128-d features from `VideoFeatureNet`, trained here to recognise which colours and
shapes a clip holds, how many objects, and whether its frames run in their natural order (so the
features see motion, not only appearance). FVD-shapes values are comparable only with each other.
`frechet_distance` takes any (N, D) feature arrays, so features from a local I3D network give
standard FVD with the same function.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn
from tqdm.auto import tqdm

from ..config import DataConfig, ShapesConfig
from ..data import ShapesDataset
from ..data.io import from_uint8
from ..data.splits import FVD_REFERENCE
from ..world import COLOURS, SHAPES

WEIGHTS = Path(__file__).parents[1] / "assets" / "video_features.safetensors"
FEATURES = 128
REFERENCE_CLIPS = 128   # ground-truth clips in the reference set
TRAIN_DATA_SEED, PROBE_DATA_SEED = 10_000, 20_000   # the feature net's own worlds, apart from any model's


class VideoFeatureNet(nn.Module):
    """(B, 3, T, H, W) in [-1, 1] -> (B, 128) features; heads for colours, shapes, count, frame order."""

    def __init__(self, width: int = 16):
        super().__init__()
        conv = lambda i, o, s: nn.Sequential(nn.Conv3d(i, o, 3, stride=s, padding=1), nn.GroupNorm(8, o), nn.SiLU())
        self.body = nn.Sequential(conv(3, width, (1, 2, 2)), conv(width, 2 * width, 2), conv(2 * width, 4 * width, 2),
                                  conv(4 * width, FEATURES // 2, 1))
        self.colours, self.shapes = nn.Linear(FEATURES, len(COLOURS)), nn.Linear(FEATURES, len(SHAPES))
        self.count, self.ordered = nn.Linear(FEATURES, 3), nn.Linear(FEATURES, 1)

    def features(self, video: torch.Tensor) -> torch.Tensor:
        # objects cover a few percent of the frame: max-pooling keeps them from drowning in background
        h = self.body(video).flatten(2)                                   # (B, C, T*H*W)
        return torch.cat([h.mean(2), h.amax(2)], dim=1)                   # (B, 128)

    def forward(self, video: torch.Tensor):
        f = self.features(video)
        return self.colours(f), self.shapes(f), self.count(f), self.ordered(f).squeeze(1)


def _labelled_batch(data: ShapesDataset, start: int, size: int, rng: np.random.Generator):
    videos, colours, shapes, counts, ordered = [], [], [], [], []
    for i in range(start, start + size):
        item = data[i]
        video = item["video"]
        keep = rng.random() < 0.5
        if not keep:  # the negative class: shuffled frames, or one frame frozen
            perm = torch.from_numpy(rng.permutation(video.shape[1])) if rng.random() < 0.5 else \
                torch.zeros(video.shape[1], dtype=torch.long)
            video = video[:, perm]
        videos.append(video)
        colours.append([float(any(t.colour == c for t in item["tracks"])) for c in COLOURS])
        shapes.append([float(any(t.shape == s for t in item["tracks"])) for s in SHAPES])
        counts.append(len(item["tracks"]) - 1)
        ordered.append(float(keep))
    return (torch.stack(videos), torch.tensor(colours), torch.tensor(shapes), torch.tensor(counts),
            torch.tensor(ordered))


def train_feature_net(steps: int = 1500, batch: int = 16, seed: int = 0, progress: bool = True) -> VideoFeatureNet:
    """Train on the synthetic world with every colour and shape and 1-3 objects (Adam, cosine LR)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = ShapesDataset(DataConfig(seed=TRAIN_DATA_SEED + seed, shapes=ShapesConfig(colours=list(COLOURS), max_objects=3)))
    net = VideoFeatureNet()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    bar = tqdm(range(steps), desc="feature net", disable=not progress)
    for step in bar:
        video, colours, shapes, count, ordered = _labelled_batch(data, step * batch, batch, rng)
        c, s, n, o = net(video)
        loss = (F.binary_cross_entropy_with_logits(c, colours) + F.binary_cross_entropy_with_logits(s, shapes)
                + F.cross_entropy(n, count) + F.binary_cross_entropy_with_logits(o, ordered))
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return net.eval()


def load_feature_net(path: Path = WEIGHTS) -> VideoFeatureNet:
    from safetensors.torch import load_file
    net = VideoFeatureNet()
    net.load_state_dict(load_file(path))
    return net.eval()


@torch.no_grad()
def video_features(net: VideoFeatureNet, videos: list[np.ndarray], batch: int = 16) -> np.ndarray:
    """(T, H, W, 3) uint8 videos -> (N, 128) features."""
    out = []
    for i in range(0, len(videos), batch):
        x = torch.stack([from_uint8(v) for v in videos[i:i + batch]])
        out.append(net.features(x).double().numpy())
    return np.concatenate(out)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussian fits of two feature sets."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean  # tiny imaginary parts are numerical noise
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def fvd_shapes(videos: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """NaN for fewer than 2 videos: one video has no covariance to compare."""
    if len(videos) < 2:
        return float("nan")
    net = load_feature_net()
    return frechet_distance(video_features(net, videos), video_features(net, reference))


def reference_clips(data: DataConfig) -> list[np.ndarray]:
    """The ground-truth clips FVD-shapes compares a data config's videos against (disjoint from the
    held-out prompts that models are evaluated on)."""
    from .sources import ground_truth
    return ground_truth(data, REFERENCE_CLIPS, FVD_REFERENCE)[1]


@torch.no_grad()
def probe_accuracy(net: VideoFeatureNet, clips: int = 256, seed: int = 99) -> dict:
    """Held-out accuracy of the training heads: evidence that the features know the world."""
    data = ShapesDataset(DataConfig(seed=PROBE_DATA_SEED + seed, shapes=ShapesConfig(colours=list(COLOURS), max_objects=3)))
    video, colours, shapes, count, ordered = _labelled_batch(data, 0, clips, np.random.default_rng(seed))
    c, s, n, o = net(video)
    return {"colour": float(((c > 0) == colours.bool()).float().mean()), "shape": float(((s > 0) == shapes.bool()).float().mean()),
            "count": float((n.argmax(1) == count).float().mean()), "order": float(((o > 0) == ordered.bool()).float().mean())}


if __name__ == "__main__":  # python -m vidiff.evaluation.fvd  re-creates the shipped weights
    from safetensors.torch import save_file
    net = train_feature_net()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, WEIGHTS)
    print(f"wrote {WEIGHTS}; held-out accuracy {probe_accuracy(net)}")
