"""A self-contained report.html: metric tables, per-frame plots (base64 PNG from matplotlib) and image strips
(base64 JPEG). Nothing is fetched when it opens; the rendered videos beside it are plain links."""

from __future__ import annotations

import base64
import html
import io
import math
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from jaxtyping import Float, UInt8
from numpy import ndarray

from deltaplane.atomic import atomic_path
from deltaplane.evaluation.keys import describe

STRIP_HEIGHT = 256
"""Images in the strips are shown at this height."""
VIEW_COLUMNS = ("id_distance", "id_same_person", "id_arcface", "fid", "sharpness_ratio", "mesh/offset", "mesh/shape",
                "background/view_change", "mouth/opening_std_ratio", "sync/correlation", "sync/offset_frames",
                "faces/missing", "faces/detected", "sync/lse_c", "sync/lse_d")
CROSS_COLUMNS = ("mouth/opening_std_ratio", "mouth/opening_mean_ratio", "mouth/open_fraction", "sync/correlation",
                 "sync/offset_frames", "sharpness_ratio", "id_distance", "faces/missing", "faces/detected",
                 "sync/lse_c", "sync/lse_d")
SHEET_LABEL_WIDTH = 150
"""Width of the row labels of the contact sheets, in pixels."""

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}
img{max-width:100%}.note{color:#555}figure{margin:1em 0}figcaption{color:#555}
"""


@dataclass(frozen=True)
class ReportData:
    """Everything report.html shows."""

    title: str
    inputs: dict[str, str]
    """What was compared (paths, split, device)."""
    metrics: dict
    skipped: dict[str, str]
    series: dict[str, Float[ndarray, " frames"]] = field(default_factory=dict)
    """Per-frame curves to plot, by metric key (e.g. 'test/psnr', 'test/lmd')."""
    strip: list[tuple[int, ndarray, ndarray, ndarray]] = field(default_factory=list)
    """(frame index, GT, render, error map) rows."""
    videos: dict[str, str] = field(default_factory=dict)
    """Rendered videos by name, as paths relative to the report (linked, not embedded)."""
    mouth_rows: list[tuple[str, tuple[tuple[int, ndarray], ...]]] = field(default_factory=list)
    """Labelled rows of (frame index, mouth crop) for the mouth contact sheet (ground truth above the render)."""
    view_rows: list[tuple[str, tuple[tuple[int | str, ndarray], ...]]] = field(default_factory=list)
    """The view sheet: a row of views (tiles named by view), a row of their depth maps, a row of spiral frames."""
    detail_rows: list[tuple[str, tuple[tuple[int, ndarray], ...]]] = field(default_factory=list)
    """Labelled rows of (frame index, crop): eyes, mouth and hair of the ground truth above the render's."""
    notes: list[str] = field(default_factory=list)


def _format(value: object) -> str:
    if isinstance(value, float):
        return "∞" if math.isinf(value) else f"{value:.4f}"
    return str(value)


def _jpeg(image: ndarray) -> str:
    scale = STRIP_HEIGHT / image.shape[0]
    resized = cv2.resize(image, (round(image.shape[1] * scale), STRIP_HEIGHT), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", resized[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok, "OpenCV could not encode a JPEG"
    return f'<img alt="frames" src="data:image/jpeg;base64,{base64.b64encode(encoded.tobytes()).decode()}">'


def _plots(series: dict[str, ndarray]) -> str:
    """One panel per metric key, with the frame index on x; NaN frames (no face) leave gaps."""
    if not series:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(len(series), 1, figsize=(10, 2.4 * len(series)), sharex=True, squeeze=False)
    for axis, (key, values) in zip(axes[:, 0], series.items()):
        finite = np.where(np.isinf(values), np.nan, values)
        axis.plot(np.arange(values.shape[0]), finite, linewidth=1)
        better, meaning = describe(key)
        axis.set_ylabel(f"{key} {better}")
        axis.set_title(meaning, fontsize=8, loc="left")
        axis.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("frame")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    pyplot.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f'<h2>Per frame</h2><img alt="per-frame plots" src="data:image/png;base64,{encoded}">'


def _metric_table(metrics: dict) -> str:
    rows = []
    for key, value in metrics.items():
        if key.startswith(("view/", "cross/")):
            continue  # shown in the view and cross tables
        better, meaning = describe(key)
        rows.append(f"<tr><td>{html.escape(key)}</td><td class=num>{_format(value)}</td><td>{better}</td>"
                    f"<td>{html.escape(meaning)}</td></tr>")
    return "<table><tr><th>metric</th><th>value</th><th>better</th><th>meaning</th></tr>" + "".join(rows) + "</table>"


def _row_table(metrics: dict, prefix: str, title: str, columns: tuple[str, ...]) -> str:
    """One row per NAME of the `prefix`NAME/… keys (camera views, driving audio files)."""
    names = list(dict.fromkeys(key.split("/")[1] for key in metrics if key.startswith(prefix)))
    if not names:
        return ""
    header = "".join(f"<th>{html.escape(column)} {describe(column)[0]}</th>" for column in columns)
    rows = []
    for name in names:
        cells = "".join(f"<td class=num>{_format(metrics[f'{prefix}{name}/{column}'])}</td>"
                        if f"{prefix}{name}/{column}" in metrics else "<td>–</td>" for column in columns)
        rows.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    return f"<h2>{html.escape(title)}</h2><table><tr><th>name</th>{header}</tr>{''.join(rows)}</table>"


def contact_sheet(rows: list[tuple[str, tuple[tuple[int | str, ndarray], ...]]]) -> UInt8[ndarray, "H W 3"]:
    """A contact sheet: one labelled row of crops per entry (all crops of the first one's size), each crop stamped
    with its label (a frame index or a name)."""
    columns = max(len(crops) for _, crops in rows)
    height, width = next(crop for _, crops in rows for _, crop in crops).shape[:2]
    lines = []
    for label, crops in rows:
        line = np.full((height, SHEET_LABEL_WIDTH + columns * width, 3), 255, np.uint8)
        cv2.putText(line, label[:22], (4, height // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
        for column, (stamp, crop) in enumerate(crops):
            cell = crop.copy()
            cv2.putText(cell, str(stamp), (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 0), 1, cv2.LINE_AA)
            line[:, SHEET_LABEL_WIDTH + column * width:SHEET_LABEL_WIDTH + (column + 1) * width] = cell
        lines.append(line)
    return np.concatenate(lines, axis=0)


def render_html(report: ReportData) -> str:
    inputs = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in report.inputs.items())
    skipped = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
                      for k, v in report.skipped.items())
    notes = "".join(f"<p class=note>{html.escape(note)}</p>" for note in report.notes)
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(report.title)}</title>"
             f"<style>{_STYLE}</style></head><body><h1>{html.escape(report.title)}</h1>",
             f"<table>{inputs}</table>{notes}<h2>Metrics</h2>{_metric_table(report.metrics)}",
             _row_table(report.metrics, "view/", "Camera views", VIEW_COLUMNS),
             _row_table(report.metrics, "cross/", "Driven by other audio (cross)", CROSS_COLUMNS)]
    if skipped:
        parts.append(f"<h2>Skipped</h2><table><tr><th>metric</th><th>reason</th></tr>{skipped}</table>")
    parts.append(_plots(report.series))
    if report.strip:
        parts.append("<h2>Ground truth | render | 4×|error|</h2>")
        for index, target, prediction, error in report.strip:
            row = np.concatenate([target, prediction, error], axis=1)
            parts.append(f"<figure>{_jpeg(row)}<figcaption>frame {index}</figcaption></figure>")
    sheets = (("Views (middle frame), their depth, spiral frames", "view sheet", report.view_rows,
               "Each camera view of the split's audio, its depth (near = white) below, and frames of the spiral."),
              ("Mouths (every k-th frame)", "mouth contact sheet", report.mouth_rows,
               "Ground truth above the render; rows below are other driving audio (their frames are not aligned "
               "with the ground truth's)."),
              ("Detail (strip frames)", "detail crops", report.detail_rows,
               "Eyes, mouth and hair: each ground-truth row above the render's crop at the same place, at about "
               "the output's own pixel size."))
    for title, alt, rows, caption in sheets:
        if any(crops for _, crops in rows):
            sheet = contact_sheet([(label, crops) for label, crops in rows if crops])
            encoded = base64.b64encode(cv2.imencode(".png", sheet[..., ::-1])[1].tobytes()).decode()
            parts.append(f"<h2>{title}</h2><figure><img alt='{alt}' src='data:image/png;base64,{encoded}'>"
                         f"<figcaption>{caption}</figcaption></figure>")
    if report.videos:
        links = "".join(f'<li><a href="{html.escape(urllib.parse.quote(path))}">{html.escape(name)}</a></li>'
                        for name, path in report.videos.items())
        parts.append(f"<h2>Rendered videos</h2><ul>{links}</ul>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(path: Path, report: ReportData) -> None:
    """Write report.html atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(render_html(report), encoding="utf-8")
