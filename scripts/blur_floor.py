"""What the landmark-based mouth metrics make of a soft image alone (docs/lip-motion.md "Run 16"): the ground-truth
test video blurred with a Gaussian of each σ, scored against itself unblurred with `deltaplane evaluate --pred
--gt`. A perfect mouth, only blurred, gives the floor that LMD and the opening ratios reach at that sharpness.

    python scripts/blur_floor.py RUN_DIR/test_gt.mp4 OUT [--sigmas 1,2,3]

Prints one row per σ: sharpness ratio, LMD, opening mean and std ratios (metrics.json of each under OUT/sigmaS/).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2

from deltaplane.cli import main as deltaplane
from deltaplane.media.video import VideoWriter, iter_frames, probe_video

COLUMNS = ("sharpness_ratio", "lmd", "mouth/opening_mean_ratio", "mouth/opening_std_ratio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gt", type=Path, help="the ground-truth test video (test_gt.mp4 of a run)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--sigmas", default="1,2,3", help="Gaussian σ in pixels, comma-separated")
    args = parser.parse_args()
    fps = probe_video(args.gt).fps
    frames = list(iter_frames(args.gt, fps))
    print("sigma " + " ".join(COLUMNS))
    for sigma in (float(s) for s in args.sigmas.split(",")):
        directory = args.out / f"sigma{sigma:g}"
        directory.mkdir(parents=True, exist_ok=True)
        blurred = directory / "blurred.mp4"
        with VideoWriter(blurred, fps) as writer:
            for frame in frames:
                writer.write(cv2.GaussianBlur(frame, (0, 0), sigma))
        deltaplane(["evaluate", "--pred", str(blurred), "--gt", str(args.gt), "-o", str(directory / "eval"),
                    "--identity-every", "1000", "--quiet"])
        metrics = json.loads((directory / "eval" / "metrics.json").read_text())
        print(f"{sigma:g} " + " ".join(f"{metrics[key]:.3f}" for key in COLUMNS), flush=True)


if __name__ == "__main__":
    main()
