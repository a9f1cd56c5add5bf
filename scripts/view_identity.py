"""Identity distance of novel views, from the contact sheets of scripts/render_views.py: per test frame, the dlib
128-D descriptor distance between the ground-truth tile and each rendered view (same person below 0.6; "no face"
where the tracker finds none). Runs on the CPU machine (dlib and mediapipe), on sheets fetched from the GPU.

    python scripts/view_identity.py SHEET.png [SHEET2.jpg ...] [--rows-per-frame 3]

--rows-per-frame: 3 for the current sheets (RGB, raw RGB, depth), 2 for sheets written before the raw row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from deltaplane.evaluation.face import IdentityEmbedder
from deltaplane.preprocess.landmarks import FaceTracker

sys.path.insert(0, str(Path(__file__).parent))
from render_views import VIEWS  # noqa: E402


def sheet_distances(path: Path, rows_per_frame: int, embedder: IdentityEmbedder) -> dict[str, list[float]]:
    """View name → distance per test frame of the sheet (NaN where either tile has no face)."""
    sheet = cv2.imread(str(path))[..., ::-1]
    tile = sheet.shape[1] // (len(VIEWS) + 1)
    distances: dict[str, list[float]] = {name: [] for name in VIEWS}
    for top in range(0, sheet.shape[0], tile * rows_per_frame):
        tiles = [np.ascontiguousarray(sheet[top:top + tile, i * tile:(i + 1) * tile]) for i in range(len(VIEWS) + 1)]
        descriptors = []
        for image in tiles:
            with FaceTracker() as tracker:  # a fresh tracker: the tiles are unrelated images, not a video
                observation = tracker.track(image)
            descriptors.append(None if observation is None else embedder.embed(image, observation.mesh))
        for name, descriptor in zip(VIEWS, descriptors[1:]):
            found = descriptor is not None and descriptors[0] is not None
            distances[name].append(float(np.linalg.norm(descriptor - descriptors[0])) if found else float("nan"))
    return distances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sheets", type=Path, nargs="+")
    parser.add_argument("--rows-per-frame", type=int, default=3)
    args = parser.parse_args()
    embedder = IdentityEmbedder()
    for path in args.sheets:
        distances = sheet_distances(path, args.rows_per_frame, embedder)
        cells = [f"{name} " + "/".join("no face" if np.isnan(d) else f"{d:.2f}" for d in values)
                 for name, values in distances.items()]
        print(f"{path}: " + " | ".join(cells))


if __name__ == "__main__":
    main()
