"""The README's samples of the embedded model: `python scripts/readme_samples.py [--model default]`.
Writes docs/default-model.gif (the four clips side by side, 4x) and docs/default-model-samples.png
(one contact-sheet row per prompt), plus docs/default-model-i2v.png: image-to-video from the first
frame of four held-out clips (top: the true clip, below: the model's continuation), and
docs/default-model-long.png: 8 frames of a held-out clip extended to 64, every 4th frame, by windows
(top row) and hierarchically (bottom row; a model trained with frame strides only)."""
import argparse
from pathlib import Path

import numpy as np
import torch

from vidiff.data import ShapesDataset, unit_stride
from vidiff.data.io import contact_sheet, save_video, tile, to_uint8, upscale
from vidiff.data.splits import HELD_OUT
from vidiff.pipeline import SampleOptions, VideoPipeline

DOCS = Path(__file__).parents[1] / "docs"
PROMPTS = ["a red circle bouncing", "a blue square and a yellow triangle bouncing", "a green triangle bouncing",
           "a magenta circle and a cyan square bouncing"]

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="default")
args = parser.parse_args()
pipe = VideoPipeline.from_pretrained(args.model)
quiet = SampleOptions(progress=False)
clips = [pipe(p, generator=torch.Generator().manual_seed(0), sampling=quiet).pixels[0] for p in PROMPTS]
save_video(upscale(tile(np.stack(clips), gap=2), 4), DOCS / "default-model.gif", overwrite=True)
sheet = np.concatenate([np.pad(contact_sheet(c), ((0, 2), (0, 0), (0, 0))) for c in clips], axis=0)
save_video(upscale(sheet[None], 3), DOCS / "default-model-samples.png", overwrite=True)
data = ShapesDataset(unit_stride(pipe.config.data))
rows = []
for i in range(4):
    item = data[HELD_OUT + 100 + i]
    truth = to_uint8(item["video"])
    made = pipe(item["caption"], image=truth[0], generator=torch.Generator().manual_seed(i), sampling=quiet).pixels[0]
    rows += [contact_sheet(truth), contact_sheet(made), np.zeros((3, contact_sheet(truth).shape[1], 3), np.uint8)]
    print(item["caption"])
save_video(upscale(np.concatenate(rows)[None], 3), DOCS / "default-model-i2v.png", overwrite=True)
print("wrote docs/default-model.gif, docs/default-model-samples.png, docs/default-model-i2v.png")
if max(pipe.trained_strides()) > 1:
    item = data[HELD_OUT + 200]
    given = to_uint8(item["video"])[:8]
    rows = []
    for mode in ("windows", "hierarchical"):
        long = pipe.extend(given, item["caption"], num_frames=64, mode=mode, generator=torch.Generator().manual_seed(0),
                           sampling=quiet).pixels[0]
        rows += [contact_sheet(long[::4]), np.zeros((3, contact_sheet(long[::4]).shape[1], 3), np.uint8)]
    save_video(upscale(np.concatenate(rows)[None], 3), DOCS / "default-model-long.png", overwrite=True)
    print(f"{item['caption']}: wrote docs/default-model-long.png")
