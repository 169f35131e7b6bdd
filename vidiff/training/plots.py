"""Pictures a training run leaves behind: the loss curve and sample grids."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..data.io import save_video, tile, to_uint8, upscale


def save_loss_plot(history: list[dict], path: Path) -> None:
    if not history:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = np.array([h["step"] for h in history])
    loss = np.array([h["loss"] for h in history])
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, loss, lw=0.8, alpha=0.4, label="loss")
    if len(loss) >= 10:  # a running mean shows the trend under the step-to-step noise
        k = max(5, len(loss) // 20)
        ax.plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), lw=1.5, label=f"mean of {k}")
    ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.set_yscale("log"), ax.grid(alpha=0.3), ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def save_samples(videos, captions: list[str], folder: Path, step: int) -> Path:
    """A GIF of the samples side by side and a PNG sheet (one row of frames per sample); returns the PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = to_uint8(videos)                                   # (B, T, H, W, 3)
    save_video(upscale(tile(frames), 2), folder / f"step_{step:08d}.gif", overwrite=True)
    sheet = np.concatenate([tile(f[:, None])[0] for f in frames], axis=0)
    Image.fromarray(upscale(sheet[None], 2)[0]).save(folder / f"step_{step:08d}.png")
    (folder / f"step_{step:08d}.txt").write_text("\n".join(captions) + "\n")
    return folder / f"step_{step:08d}.png"
