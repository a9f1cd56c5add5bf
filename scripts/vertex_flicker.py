"""How much the frame's colour at each face-mesh vertex changes from one training frame to the next, for the vertices
the pseudo multi-view colour term keeps (`FrameBatch.face_point_colour`) and those it leaves out (near the eyes and
the mouth opening, `geometry.face_regions.near_features`): the colour term copies that colour to novel cameras, so
it should be a surface's, not an edge that blinks and speech move across (docs/novel-views.md "Run 27").

    python scripts/vertex_flicker.py DATASET [DATASET ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from deltaplane.data.dataset import load_clip
from deltaplane.geometry.face_depth import FACE_VERTICES, sample_pixels

SIZE = 256
"""Frames are read at this size (the vertices' pixels follow)."""
TOP = 40
"""How many of the most changing vertices to list."""


def vertex_changes(dataset: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each vertex's mean |grey change| between consecutive training frames where it is valid in both (NaN with
    10 such pairs or fewer), and whether the colour term keeps it and whether it is valid, in most frames."""
    _, clip = load_clip(dataset, "train", size=SIZE)
    grey = torch.cat([sample_pixels(clip.frames[start:start + 64].float().mean(1, keepdim=True),
                                    clip.face_points[start:start + 64, :FACE_VERTICES, :2], SIZE)[:, 0]
                      for start in range(0, len(clip), 64)]).numpy()  # [frames, 468], grey levels
    valid = clip.face_point_valid[:, :FACE_VERTICES].numpy()  # the mesh's; the head proxy's points are drawn anew
    pairs = valid[1:] & valid[:-1]
    step = np.abs(np.diff(grey, axis=0))
    change = np.array([step[pairs[:, vertex], vertex].mean() if pairs[:, vertex].sum() > 10 else np.nan
                       for vertex in range(grey.shape[1])])
    return change, clip.face_point_colour[:, :FACE_VERTICES].numpy().mean(0) > 0.5, valid.mean(0) > 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, nargs="+")
    for dataset in parser.parse_args().datasets:
        change, kept, valid = vertex_changes(dataset)
        usable = valid & np.isfinite(change)
        left = usable & ~kept
        kept &= usable
        top = np.argsort(-np.where(usable, change, -np.inf))[:TOP]
        print(f"{dataset.name}: {kept.sum()} vertices kept, {left.sum()} left out; mean |frame-to-frame change| "
              f"{change[kept].mean():.2f} kept, {change[left].mean():.2f} left out (grey levels); median / 90th "
              f"percentile {np.percentile(change[kept], 50):.2f} / {np.percentile(change[kept], 90):.2f} kept, "
              f"{np.percentile(change[left], 50):.2f} / {np.percentile(change[left], 90):.2f} left out; "
              f"{left[top].sum()} of the {TOP} most changing are left out; the kept ones among them (vertex, change): "
              f"{[(int(vertex), round(float(change[vertex]), 1)) for vertex in top if kept[vertex]]}")


if __name__ == "__main__":
    main()
