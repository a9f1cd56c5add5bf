"""How a run's test render errs in the eyes, the mouth and the rest of the face (regions from the dataset's aligned 68
landmarks, `geometry.face_regions`): per region the PSNR against the ground truth and the mean signed brightness
difference (render − truth, grey levels 0–255: a pale region is positive), over the test frames. Reads test.mp4 and
test_gt.mp4 of `scripts/gpu_lip_motion.py` (or any PRED / GT pair with `--pred` / `--gt`).

    python scripts/region_errors.py DATASET RENDER_DIR [RENDER_DIR ...] > regions.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from deltaplane.data.schema import TRACKS, read_manifest
from deltaplane.geometry.face_regions import EYES, OUTER_MOUTH, face_width, polygon_distance
from deltaplane.media.video import iter_frames

EYE_MARGIN = 0.06
"""The eye region reaches this fraction of the face width beyond the eye outline: the lids and lashes."""
MOUTH_MARGIN = 0.03
"""The mouth region reaches this fraction of the face width beyond the outer lip outline."""
FACE_OUTLINE = (*range(17), *range(26, 16, -1))
"""The jaw (0–16) and the brows back from 26 to 17: the face as one polygon."""


def region_masks(landmarks: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """[frames, size, size] masks of the eyes, the mouth and the rest of the face for landmarks in `size`² pixels
    (one frame at a time: a frame's pixels against a polygon's edges take ~100 MB)."""
    grid = np.stack(np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5), -1).reshape(-1, 2)
    masks: dict[str, list[np.ndarray]] = {"eyes": [], "mouth": [], "other_face": []}
    for points, width in zip(landmarks, face_width(landmarks)):
        eyes = np.zeros(len(grid), dtype=bool)
        for outline in EYES:
            eyes |= polygon_distance(grid, points[list(outline)]) <= EYE_MARGIN * width
        mouth = polygon_distance(grid, points[list(OUTER_MOUTH)]) <= MOUTH_MARGIN * width
        face = (polygon_distance(grid, points[list(FACE_OUTLINE)]) <= 0) & ~eyes & ~mouth
        for name, mask in (("eyes", eyes & ~mouth), ("mouth", mouth), ("other_face", face)):
            masks[name].append(mask.reshape(size, size))
    return {name: np.stack(frames) for name, frames in masks.items()}


def read_video(path: Path) -> np.ndarray:
    return np.stack([np.asarray(frame) for frame in iter_frames(path)]).astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("renders", type=Path, nargs="+")
    args = parser.parse_args()
    manifest = read_manifest(args.dataset)
    landmarks = np.load(args.dataset / TRACKS)["landmarks_aligned"][manifest.splits["test"]].astype(np.float64)
    report, masks = {}, None
    for renders in args.renders:
        render, truth = read_video(renders / "test.mp4"), read_video(renders / "test_gt.mp4")
        if masks is None:
            masks = region_masks(landmarks * render.shape[1] / manifest.image_size, render.shape[1])
        squared = ((render - truth) ** 2).mean(-1)
        signed = (render - truth).mean(-1)
        report[str(renders)] = {name: {"psnr": 10 * np.log10(255 ** 2 / squared[mask].mean()),
                                       "brightness": signed[mask].mean(), "share": mask.mean()}
                                for name, mask in masks.items()}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
