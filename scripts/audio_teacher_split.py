"""Where a run's audio-driven test render differs from the same weights driven by the tracked lips (the teacher),
by the dataset's parsing labels (docs/background.md): mean |audio − teacher| in grey levels (0–255) and the PSNR of
each against the ground truth, over the backdrop, torso, head (hair, ears, neck) and face of the test frames, the
whole frame, and a fixed lower-face window (LOWER_FACE). Reads test.mp4, test_teacher.mp4, test_gt.mp4 and, when
there, test_teacher_snapped.mp4 of `scripts/gpu_lip_motion.py`.

    python scripts/audio_teacher_split.py RENDER_DIR DATASET [--difference diff.png] > split.json

`--difference` also writes the mean |audio − teacher| image over the test frames (and beside it the mean |snapped
teacher − teacher| when that render exists), grey levels × DIFFERENCE_GAIN: where the audio moves the frame.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from deltaplane.data.schema import read_manifest
from deltaplane.media.video import iter_frames

REGIONS = {"backdrop": (0,), "torso": (1,), "head": (2,), "face": (3, 4, 5)}
"""Parsing labels of each region (docs/dataset.md)."""
DIFFERENCE_GAIN = 12
"""Brightness gain of the `--difference` image (a mean difference of 21 grey levels saturates it)."""
LOWER_FACE = (0.55, 0.85, 0.30, 0.70)
"""(top, bottom, left, right) of the lower-face window, as fractions of the frame: the aligned frames put mouth and
chin there."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("renders", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--difference", type=Path, help="PNG of the mean |audio − teacher| image")
    args = parser.parse_args()
    names = ["test", "test_teacher", "test_gt"] + (["test_teacher_snapped"]
                                                   if (args.renders / "test_teacher_snapped.mp4").exists() else [])
    videos = {name: np.stack([np.asarray(frame) for frame in iter_frames(args.renders / f"{name}.mp4")])
              .astype(np.float64) for name in names}
    size = videos["test"].shape[2:0:-1]  # (width, height)
    labels = np.stack([cv2.resize(cv2.imread(str(args.dataset / "parsing" / f"{index:06d}.png"), cv2.IMREAD_UNCHANGED),
                                  size, interpolation=cv2.INTER_NEAREST)
                       for index in read_manifest(args.dataset).splits["test"]])
    squared = {name: ((videos[name] - videos["test_gt"]) ** 2).mean(-1) for name in names if name != "test_gt"}
    height, width = labels.shape[1:]
    top, bottom, left, right = LOWER_FACE
    window = np.zeros_like(labels, dtype=bool)
    window[:, int(height * top):int(height * bottom), int(width * left):int(width * right)] = True
    masks = {region: np.isin(labels, values) for region, values in REGIONS.items()}
    masks.update(frame=np.ones_like(window), lower_face=window)
    report = {}
    for region, mask in masks.items():
        report[region] = {"share": mask.mean(),
                          "audio_vs_teacher": np.abs(videos["test"] - videos["test_teacher"]).mean(-1)[mask].mean(),
                          **{f"psnr_{name}": 10 * np.log10(255 ** 2 / error[mask].mean())
                             for name, error in squared.items()}}
    print(json.dumps(report, indent=1))
    if args.difference is not None:
        panels = [np.abs(videos[name] - videos["test_teacher"]).mean(axis=(0, 3))
                  for name in ("test", "test_teacher_snapped") if name in videos]
        image = np.clip(np.concatenate(panels, axis=1) * DIFFERENCE_GAIN, 0, 255).astype(np.uint8)
        cv2.imwrite(str(args.difference), image)


if __name__ == "__main__":
    main()
