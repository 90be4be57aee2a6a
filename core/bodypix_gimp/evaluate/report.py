"""Turning harness results into a terminal table, a JSON file, a markdown report and overlays."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..imageio import atomic_write, load_image, save_png
from ..render import outline_overlay
from .datasets import load_sample
from .harness import DatasetResult, regressions, targets

COLUMNS = (
    ("iou", "IoU", "{:.3f}"),
    ("f@1", "F@1px", "{:.3f}"),
    ("f@2", "F@2px", "{:.3f}"),
    ("f@5", "F@5px", "{:.3f}"),
    ("offset", "offset px", "{:+.2f}"),
    ("band_iou", "band IoU", "{:.3f}"),
    ("alpha_mae_band", "alpha MAE band", "{:.3f}"),
    ("parts_iou", "parts IoU", "{:.3f}"),
    ("hand_iou", "hand IoU", "{:.3f}"),
    ("hand_tips", "tips in", "{:.3f}"),
    ("ms", "ms/img", "{:.0f}"),
)
TRUTH_COLOR = (0, 255, 0)
PRED_COLOR = (255, 0, 255)


def table_rows(result: DatasetResult) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per configuration) of the columns this dataset has values for."""
    summaries = {name: cr.summary() for name, cr in result.configs.items()}
    cols = [c for c in COLUMNS if any(c[0] in s for s in summaries.values())]
    header = ["config"] + [c[1] for c in cols]
    rows = []
    for name, s in summaries.items():
        rows.append([name] + [c[2].format(s[c[0]]) if c[0] in s else "-" for c in cols])
    return header, rows


def text_table(result: DatasetResult) -> str:
    header, rows = table_rows(result)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(
            v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))
        )

    title = f"{result.dataset.name} ({len(result.dataset)} photos, truth: {result.dataset.kind})"
    out = [title, line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]
    for t, ok, measured in targets(result):
        out.append(f"  target [{'x' if ok else ' '}] {t}: {measured}")
    return "\n".join(out)


def markdown_table(result: DatasetResult) -> str:
    header, rows = table_rows(result)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def to_json(results: list[DatasetResult], command: str | None = None) -> dict[str, Any]:
    """Everything: configurations, per-dataset summaries, per-photo rows, targets."""
    configs = {}
    for r in results:
        for name, cr in r.configs.items():
            configs[name] = cr.config.to_dict()
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "configs": configs,
        "datasets": {
            r.dataset.name: {
                "root": str(r.dataset.root),
                "kind": r.dataset.kind,
                "photos": len(r.dataset),
                "summary": {name: cr.summary() for name, cr in r.configs.items()},
                "targets": [{"target": t, "met": ok, "measured": m} for t, ok, m in targets(r)],
                "regressions": {name: regressions(r, name) for name in r.configs},
                "per_photo": {name: cr.rows for name, cr in r.configs.items()},
            }
            for r in results
        },
    }


def overlay(image: np.ndarray, pred: np.ndarray, truth: np.ndarray | None) -> np.ndarray:
    """Photo with the true edge in green (when known) and the predicted edge in magenta."""
    out = image
    if truth is not None:
        out = outline_overlay(out, truth, TRUTH_COLOR)
    return outline_overlay(out, pred, PRED_COLOR)


def write_overlays(
    results: list[DatasetResult], out_dir: Path, configs: list[str] | None = None
) -> list[Path]:
    """Overlays of each configuration's worst photos (every photo for truth-less sets).

    Files: ``out_dir/overlays/<dataset>/<config>/<rank>_<photo>_iou<IoU>.png``.
    """
    written = []
    for r in results:
        paths = {p.stem: p for p in r.dataset.images}
        for name, cr in r.configs.items():
            if configs and name not in configs:
                continue
            for rank, (key, _i, photo, mask) in enumerate(sorted(cr.worst, key=lambda t: (-t[0], t[1])), 1):
                sample = load_sample(r.dataset, paths[photo])
                image = load_image(paths[photo])
                truth = None if sample.gt is None else sample.gt.astype(np.uint8) * 255
                tag = f"_iou{-key:.3f}" if sample.gt is not None else ""
                target = out_dir / "overlays" / r.dataset.name / name / f"{rank:02d}_{photo}{tag}.png"
                save_png(target, overlay(image, mask, truth))
                written.append(target)
    return written


def markdown(results: list[DatasetResult], command: str | None, overlays: list[Path], out_dir: Path) -> str:
    lines = ["# Evaluation report", ""]
    if command:
        lines += ["Command:", "", f"    {command}", ""]
    lines += [
        "Metrics: person IoU; boundary F-score at 1/2/5 px (distance transforms); mean signed "
        "boundary offset in px (positive = predicted edge outside the person); IoU inside a 5 px band "
        "around the true edge (plus the soft region of alpha mattes); time per photo (ms, this machine).",
        "",
    ]
    configs = {}
    for r in results:
        configs.update({n: cr.config.description for n, cr in r.configs.items()})
    lines += ["Configurations:", ""] + [f"- `{n}`: {d}" for n, d in configs.items()] + [""]
    for r in results:
        lines += [f"## {r.dataset.name} ({len(r.dataset)} photos, truth: {r.dataset.kind})", ""]
        if r.dataset.kind != "images":
            lines += [markdown_table(r), ""]
            t = targets(r)
            if t:
                lines += ["Targets for `default`:", ""]
                lines += [f"- [{'x' if ok else ' '}] {name}: {m}" for name, ok, m in t] + [""]
        mine = [p for p in overlays if p.parts[-3] == r.dataset.name and p.parts[-2] == "default"]
        if mine:
            lines += ["Overlays of `default` (green = truth, magenta = prediction):", ""]
            lines += [f"- [{p.name}]({p.relative_to(out_dir).as_posix()})" for p in mine] + [""]
    return "\n".join(lines)


def write_all(
    results: list[DatasetResult], out_dir: Path, command: str | None, overlay_configs: list[str] | None = None
) -> dict[str, Path]:
    """Write ``eval.json``, ``eval.md`` and the overlays into ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    overlays = write_overlays(results, out_dir, overlay_configs)
    data = to_json(results, command)
    text = json.dumps(_clean(data), indent=1, default=_json_default)
    js = out_dir / "eval.json"
    atomic_write(js, lambda tmp: tmp.write_text(text))
    md = out_dir / "eval.md"
    body = markdown(results, command, overlays, out_dir)
    atomic_write(md, lambda tmp: tmp.write_text(body))
    return {"json": js, "markdown": md, "overlays": out_dir / "overlays"}


def _clean(o: Any) -> Any:
    """NaN -> null, so the file is strict JSON (a photo without a boundary has no offset)."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and o != o:
        return None
    return o


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, float) and o != o:
        return None
    raise TypeError(type(o))


__all__ = ["text_table", "markdown_table", "to_json", "write_all", "overlay"]
