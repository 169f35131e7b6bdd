"""Score a set of videos and write report.json, report.md, a best/worst contact sheet and plots."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from ..data.io import tile, upscale
from ..world import parse_caption
from .temporal import temporal_scores
from .law import Law
from .world import score_video

WORLD_METRICS = ("permanence", "fidelity", "shape_stability", "size_stability", "physics_error_px")
LAW_METRICS = ("gravity_error_px", "velocity_error_px", "collision_error_px", "overlap_px", "energy_drift",
               "truth_velocity_error_px", "collision_direction")
VIEWER_METRICS = ("max_jump_px", "missing_frames", "extra_frames", "merged_frames", "blend_share")
TEMPORAL_METRICS = ("warping_error", "flicker")
HIGHER_IS_BETTER = {"fvd_shapes": False, "permanence": True, "fidelity": True, "shape_stability": True, "size_stability": True,
                    "physics_error_px": False, "dynamic_degree": True, "warping_error": False, "flicker": False,
                    "viewer_pass": True, "max_jump_px": False, "missing_frames": False, "extra_frames": False,
                    "merged_frames": False, "blend_share": False, **{m: False for m in LAW_METRICS}, "collision_direction": True}
PER_VIDEO = WORLD_METRICS + LAW_METRICS + VIEWER_METRICS + TEMPORAL_METRICS
# the best/worst sheet's ranking: the mean of the metrics that are shares in [0, 1], less 0.05 per pixel of
# physics error (20 px, a lost track, when nothing could be fitted) and 1 for a clip that does not move
RANKED_SHARES = ("permanence", "fidelity", "shape_stability", "size_stability")
PHYSICS_WEIGHT, UNTRACKED_PHYSICS_PX = 0.05, 20.0


def ranking_score(row: dict) -> float:
    """One number to sort samples by for the best/worst sheet (not a reported metric)."""
    if "permanence" not in row:
        return -row["warping_error"]
    parts = [row[m] for m in RANKED_SHARES]
    physics = np.nan_to_num(row["physics_error_px"], nan=UNTRACKED_PHYSICS_PX)
    return float(np.nanmean(parts)) - PHYSICS_WEIGHT * physics - (not row["moving"])


def score_all(names: list[str], videos: list[np.ndarray], captions: list[str | None],
              law: Law | None = None, progress: bool = True, size: int | None = None, known: int = 0) -> list[dict]:
    """Per-video rows; the world's metrics at `size` x `size` pixels under its `law` (world.score_video)."""
    rows = []
    for name, video, caption in tqdm(list(zip(names, videos, captions)), desc="evaluate", disable=not progress):
        row = {"name": name}
        if caption and parse_caption(caption):   # the synthetic world's metrics need a parseable caption
            row.update(score_video(video, caption, size=size, law=law, known=known))
        row.update(temporal_scores(video))
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict:
    """Means over videos, medians beside them (`<metric>_median`: one broken video can dominate a mean),
    the share of videos that move (dynamic_degree) and that a viewer would call correct (viewer_pass)."""
    summary = {"videos": len(rows)}
    for metric in PER_VIDEO:
        values = [r[metric] for r in rows if metric in r and np.isfinite(r[metric])]
        if values:
            summary[metric] = float(np.mean(values))
            summary[f"{metric}_median"] = float(np.median(values))
    for metric, key in (("dynamic_degree", "moving"), ("viewer_pass", "viewer_pass")):
        flags = [r[key] for r in rows if key in r]
        if flags:
            summary[metric] = float(np.mean(flags))
    return summary


def markdown_table(columns: dict[str, dict]) -> str:
    """Metrics as rows, one column per evaluated set (e.g. model vs ground truth)."""
    metrics = [m for m in ("viewer_pass", *WORLD_METRICS, *LAW_METRICS, "dynamic_degree", *VIEWER_METRICS,
                           *TEMPORAL_METRICS, "fvd_shapes")
               if any(m in c for c in columns.values())]
    lines = ["| metric (mean, median) | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for m in metrics:
        arrow = "↑" if HIGHER_IS_BETTER[m] else "↓"
        cells = [("–" if m not in c else f"{c[m]:.3f}" + (f" ({c[m + '_median']:.3f})" if m + "_median" in c else ""))
                 for c in columns.values()]
        lines.append(f"| {m} {arrow} | " + " | ".join(cells) + " |")
    lines.append("| videos | " + " | ".join(str(c["videos"]) for c in columns.values()) + " |")
    return "\n".join(lines)


def write_report(out: Path, rows: list[dict], videos: list[np.ndarray], title: str, show: int = 3,
                 extra: dict | None = None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    summary = {**summarize(rows), **(extra or {})}
    (out / "report.json").write_text(json.dumps({"title": title, "summary": summary, "videos": rows}, indent=2) + "\n")
    order = np.argsort([ranking_score(r) for r in rows])
    worst, best = list(order[:show]), list(order[::-1][:show])
    lines = [f"# {title}", "", markdown_table({"value": summary}), "", "## Per video", "",
             "| video | caption | viewer | " + " | ".join(PER_VIDEO) + " |",
             "|---|---|---|" + "---:|" * len(PER_VIDEO)]
    for r in rows:
        cells = [f"{r[m]:.3f}" if m in r and np.isfinite(r[m]) else "–" for m in PER_VIDEO]
        verdict = {True: "pass", False: "fail"}.get(r.get("viewer_pass"), "–")
        lines.append(f"| {r['name']} | {r.get('caption', '')} | {verdict} | " + " | ".join(cells) + " |")
    lines += ["", f"Best (top) and worst (bottom) {show}: `best_worst.png`; distributions: `metrics.png`.",
              "Pixels are those of the world's frame size; `–`: nothing to measure (e.g. no object clear of the others)."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    _best_worst_sheet(out / "best_worst.png", videos, [rows[i] for i in best + worst], best, worst)
    _metric_plot(out / "metrics.png", rows)
    return summary


def _label(row: dict) -> str:
    """The line printed above a video on the sheet: name, caption, verdict and what failed."""
    parts = [row["name"], row.get("caption") or "(no caption)"]
    if "viewer_pass" in row:
        parts.append("PASS" if row["viewer_pass"] else "FAIL")
        parts.append(f"perm {row['permanence']:.2f} jump {row['max_jump_px']:.1f}px miss {row['missing_frames']:.2f} "
                     f"extra {row['extra_frames']:.2f} shape-changes {row['shape_changes']}")
    else:
        parts.append(f"warp {row['warping_error']:.3f}")
    return " | ".join(parts)


def _best_worst_sheet(path: Path, videos: list[np.ndarray], rows: list[dict], best: list[int], worst: list[int]) -> None:
    """Best (top) and worst (bottom) videos, frames left to right, each under a line with its caption and scores."""
    from PIL import ImageDraw
    frames = min(len(videos[i]) for i in best + worst)
    strips = [upscale(tile(videos[i][:frames, None]), 2)[0] for i in best + worst]   # each: frames side by side
    width = max(max(s.shape[1] for s in strips), 640)
    blocks = []
    for k, (strip, row) in enumerate(zip(strips, rows)):
        text = Image.new("RGB", (width, 14), (0, 0, 0))
        ImageDraw.Draw(text).text((2, 1), _label(row), fill=(255, 255, 255))
        blocks += [np.asarray(text), np.pad(strip, ((0, 0), (0, width - strip.shape[1]), (0, 0)))]
        if k == len(best) - 1:
            blocks.append(np.full((4, width, 3), 255, np.uint8))           # white line between best and worst
    Image.fromarray(np.concatenate(blocks, axis=0)).save(path)


def _metric_plot(path: Path, rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    metrics = [m for m in PER_VIDEO if any(m in r for r in rows)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics), 2.4), dpi=100, squeeze=False)
    for ax, m in zip(axes[0], metrics):
        values = [r[m] for r in rows if m in r and np.isfinite(r[m])]
        ax.hist(values, bins=10, color="tab:blue", alpha=0.8)
        ax.set_title(m, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
