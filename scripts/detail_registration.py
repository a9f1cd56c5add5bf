"""Is a render's wrong detail misregistered or wrong? (docs/sharpness.md "Run 17"). `detail_gain_K` of `deltaplane
evaluate` scores the finest Laplacian-pyramid bands of a render against the ground truth, frame by frame, where
they are: a face drawn a pixel off scores badly in band 1 however right its texture. This scores each frame as it
is and at the whole-frame sub-pixel shift (within ±MAX_SHIFT px) that maximises its band-2 gain, inside the ground
truth's face hull.

    python scripts/detail_registration.py RENDER.mp4 GT.mp4 [--every 3]

Prints the mean gains of bands 1 and 2 unshifted and at the best shift, and the mean |shift| along x and y. The best
of many shifts is biased upwards, so a gain that stays under 0 at its best shift is wrong detail, not a shift.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np
from jaxtyping import Bool, UInt8
from numpy import ndarray

from deltaplane.evaluation.face import face_mask
from deltaplane.evaluation.pixels import detail_scores
from deltaplane.media.video import iter_frames
from deltaplane.preprocess.landmarks import FaceTracker

MAX_SHIFT = 2.0
"""Largest shift tried along each axis, in output pixels."""
SHIFT_STEP = 0.5
"""Spacing of the tried shifts (bicubic resampling)."""
BANDS = ("detail_gain_1", "detail_gain_2")
"""The scores of `evaluation.pixels.detail_scores` compared; the best shift is the last one's."""


def shifted(image: UInt8[ndarray, "H W 3"], dx: float, dy: float) -> UInt8[ndarray, "H W 3"]:
    return cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), image.shape[1::-1], flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


def gains(render: UInt8[ndarray, "H W 3"], truth: UInt8[ndarray, "H W 3"], face: Bool[ndarray, "H W"]
          ) -> list[float]:
    """`deltaplane evaluate`'s detail_gain_1/2 of one frame (NaN where the truth's band is empty)."""
    scores = detail_scores(render, truth, face)
    return [scores.get(band, math.nan) for band in BANDS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("render", type=Path)
    parser.add_argument("gt", type=Path)
    parser.add_argument("--every", type=int, default=3, help="score every k-th frame (81 shifts a frame)")
    args = parser.parse_args()
    steps = np.arange(-MAX_SHIFT, MAX_SHIFT + SHIFT_STEP / 2, SHIFT_STEP)
    rows = []
    with FaceTracker() as tracker:
        for index, (render, truth) in enumerate(zip(iter_frames(args.render), iter_frames(args.gt))):
            observation = tracker.track(truth)  # every frame, so that the tracker keeps its face
            if index % args.every or observation is None:
                continue
            if render.shape != truth.shape:
                render = cv2.resize(render, truth.shape[1::-1], interpolation=cv2.INTER_AREA)
            face = face_mask(observation.landmarks68, *truth.shape[:2])
            best = max(((gains(shifted(render, dx, dy), truth, face), dx, dy) for dx in steps for dy in steps),
                       key=lambda candidate: candidate[0][-1])
            rows.append([*gains(render, truth, face), *best[0], abs(best[1]), abs(best[2])])
    table = np.nanmean(np.array(rows), axis=0)
    print(f"frames {len(rows)} | unshifted gain 1 / 2: {table[0]:.2f} / {table[1]:.2f} dB | at the best shift: "
          f"{table[2]:.2f} / {table[3]:.2f} dB | mean |shift| x / y: {table[4]:.2f} / {table[5]:.2f} px")


if __name__ == "__main__":
    main()
