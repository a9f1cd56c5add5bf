"""How much the aligned face jitters from frame to frame (docs/sharpness.md "Registration"), and whether a run's
learned per-frame shifts (`training.registration`) follow it.

Phase correlation (`cv2.phaseCorrelate`, Hann window) of each aligned frame's eye–nose region (the box of landmarks
17–47) against the clip's median frame; displacements over MAX_SHIFT px are dropped as failures.

    python scripts/alignment_jitter.py DATASET [RUN_DIR]

Prints the mean frame-to-frame displacement and the standard deviation of what a Gaussian over SMOOTH frames does not
explain; with RUN_DIR (holding `registration_shifts.npy` from `scripts/gpu_lip_motion.py` and `driving_tracks.npz`),
the correlation of the learned shifts with the displacement of the same training frames, and with their mouth's
opening (`evaluation.face.mouth_opening` of the tracked landmarks: a shift that took up the mouth's motion would
follow it), per axis.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from jaxtyping import Float
from numpy import ndarray
from scipy.ndimage import gaussian_filter1d

from deltaplane.checkpoint import DRIVING_TRACKS
from deltaplane.data.schema import FRAMES_VIDEO, TRACKS
from deltaplane.evaluation.face import mouth_opening
from deltaplane.media.video import iter_frames

MAX_SHIFT = 6.0
"""Larger displacements (px) are taken as failures of the correlation and dropped."""
SMOOTH = 3.0
"""σ (frames) of the Gaussian whose residual is the jitter."""


def displacements(dataset: Path) -> Float[ndarray, "frames 2"]:
    """(x, y) displacement of each frame's eye–nose region from the clip's median, in pixels."""
    landmarks = np.load(dataset / TRACKS)["landmarks_aligned"]
    gray = np.stack([frame.mean(-1).astype(np.float32) for frame in iter_frames(dataset / FRAMES_VIDEO)])
    points = landmarks[:, 17:48].reshape(-1, 2)
    (x0, y0), (x1, y1) = np.percentile(points, 2, axis=0).astype(int), np.percentile(points, 98, axis=0).astype(int)
    reference = np.median(gray[:, y0:y1, x0:x1], axis=0).astype(np.float32)
    window = cv2.createHanningWindow(reference.shape[::-1], cv2.CV_32F)
    return np.array([cv2.phaseCorrelate(reference, frame[y0:y1, x0:x1].copy(), window)[0] for frame in gray])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("run_dir", type=Path, nargs="?")
    args = parser.parse_args()
    moved = displacements(args.dataset)
    valid = (np.abs(moved) < MAX_SHIFT).all(1)
    kept = moved[valid]
    residual = kept - gaussian_filter1d(kept, SMOOTH, axis=0, mode="nearest")
    print(f"{valid.sum()} of {len(moved)} frames correlated; mean |frame-to-frame| x/y "
          f"{np.abs(np.diff(kept, axis=0)).mean(0).round(2)} px; std not explained by σ = {SMOOTH} frames "
          f"{residual.std(0).round(2)} px")
    if args.run_dir is not None:
        learned = np.load(args.run_dir / "registration_shifts.npy")
        indices = np.load(args.run_dir / DRIVING_TRACKS)["indices"]
        ok = valid[indices]
        landmarks = np.load(args.dataset / TRACKS)["landmarks_aligned"][indices]
        openings = np.array([mouth_opening(points) for points in landmarks])
        correlation = [np.corrcoef(moved[indices][ok, axis], learned[ok, axis])[0, 1] for axis in range(2)]
        with_mouth = [np.corrcoef(openings, learned[:, axis])[0, 1] for axis in range(2)]
        print(f"learned shifts: RMS x/y {np.sqrt(np.square(learned).mean(0)).round(2)} px; correlation with the "
              f"displacement x {correlation[0]:.2f}, y {correlation[1]:.2f}; with the mouth's opening "
              f"x {with_mouth[0]:.2f}, y {with_mouth[1]:.2f}")


if __name__ == "__main__":
    main()
