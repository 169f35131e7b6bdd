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
from .world import score_video

WORLD_METRICS = ("permanence", "fidelity", "shape_stability", "size_stability", "physics_error_px")
TEMPORAL_METRICS = ("warping_error", "flicker")
HIGHER_IS_BETTER = {"fvd_shapes": False, "permanence": True, "fidelity": True, "shape_stability": True, "size_stability": True,
                    "physics_error_px": False, "dynamic_degree": True, "warping_error": False, "flicker": False}


def ranking_score(row: dict) -> float:
    """One number to sort samples by for the best/worst sheet (not a reported metric)."""
    if "permanence" not in row:
        return -row["warping_error"]
    parts = [row[m] for m in WORLD_METRICS[:4]]
    return float(np.nanmean(parts)) - 0.05 * np.nan_to_num(row["physics_error_px"], nan=20.0) - (not row["moving"])


def score_all(names: list[str], videos: list[np.ndarray], captions: list[str | None],
              gravity_px: float = 0.0, progress: bool = True) -> list[dict]:
    rows = []
    for name, video, caption in tqdm(list(zip(names, videos, captions)), desc="evaluate", disable=not progress):
        row = {"name": name}
        if caption and parse_caption(caption):   # the synthetic world's metrics need a parseable caption
            row.update(score_video(video, caption, gravity_px))
        row.update(temporal_scores(video))
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict:
    summary = {"videos": len(rows)}
    for metric in WORLD_METRICS + TEMPORAL_METRICS:
        values = [r[metric] for r in rows if metric in r and np.isfinite(r[metric])]
        if values:
            summary[metric] = float(np.mean(values))
    moving = [r["moving"] for r in rows if "moving" in r]
    if moving:
        summary["dynamic_degree"] = float(np.mean(moving))
    return summary


def markdown_table(columns: dict[str, dict]) -> str:
    """Metrics as rows, one column per evaluated set (e.g. model vs ground truth)."""
    metrics = [m for m in (*WORLD_METRICS, "dynamic_degree", *TEMPORAL_METRICS, "fvd_shapes")
               if any(m in c for c in columns.values())]
    lines = ["| metric | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for m in metrics:
        arrow = "↑" if HIGHER_IS_BETTER[m] else "↓"
        cells = [f"{c[m]:.3f}" if m in c else "–" for c in columns.values()]
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
             "| video | caption | " + " | ".join(WORLD_METRICS + TEMPORAL_METRICS) + " |",
             "|---|---|" + "---:|" * (len(WORLD_METRICS) + len(TEMPORAL_METRICS))]
    for r in rows:
        cells = [f"{r[m]:.3f}" if m in r else "–" for m in WORLD_METRICS + TEMPORAL_METRICS]
        lines.append(f"| {r['name']} | {r.get('caption', '')} | " + " | ".join(cells) + " |")
    lines += ["", f"Best (top) and worst (bottom) {show}: `best_worst.png`; distributions: `metrics.png`."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    _best_worst_sheet(out / "best_worst.png", videos, best, worst)
    _metric_plot(out / "metrics.png", rows)
    return summary


def _best_worst_sheet(path: Path, videos: list[np.ndarray], best: list[int], worst: list[int]) -> None:
    frames = min(len(videos[i]) for i in best + worst)
    rows = [tile(videos[i][:frames, None])[0] for i in best + worst]   # each: frames side by side
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    sep = np.full((3, width, 3), (255, 255, 255), np.uint8)             # white line between best and worst
    sheet = np.concatenate(rows[: len(best)] + [sep] + rows[len(best):], axis=0)
    Image.fromarray(upscale(sheet[None], 2)[0]).save(path)


def _metric_plot(path: Path, rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    metrics = [m for m in WORLD_METRICS + TEMPORAL_METRICS if any(m in r for r in rows)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics), 2.4), dpi=100, squeeze=False)
    for ax, m in zip(axes[0], metrics):
        values = [r[m] for r in rows if m in r and np.isfinite(r[m])]
        ax.hist(values, bins=10, color="tab:blue", alpha=0.8)
        ax.set_title(m, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
