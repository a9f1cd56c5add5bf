"""Does the watermark hold on small renders? Re-marks the frames of existing renders (e.g. the 128² tiny-preset
renders of `deltaplane demo`) with another key, so that their own mark does not count, and prints the detector's z
for: 8-pixel cells (the old layout), the current layout as written (CRF 18), after re-encoding at CRF 28, and after a
×2 upscale re-encoded at CRF 23. The threshold is `WatermarkConfig.z_threshold` (6).

    python scripts/watermark_small_check.py RENDER.mp4 [RENDER.mp4 ...]
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import cv2

from deltaplane.media.video import VideoWriter, iter_frames
from deltaplane.watermark import WatermarkConfig, detect_video, embed

KEY = 777
"""Not the public key, so that the renders' own mark is noise here."""


def encoded(frames, path: Path, crf: int) -> Path:
    with VideoWriter(path, 25.0, crf=crf) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def check(render: Path, work: Path) -> dict[str, float]:
    frames = list(iter_frames(render, 25.0))
    config = WatermarkConfig(key=KEY)
    eight = dataclasses.replace(config, small_below=0)  # every size on 8-pixel cells
    row = {"z_8px_cells": detect_video(encoded([embed(f, eight) for f in frames], work / "eight.mp4", 18),
                                       eight).z_score}
    written = encoded([embed(f, config) for f in frames], work / "marked.mp4", 18)
    row["z_as_written"] = detect_video(written, config).z_score
    row["z_other_key"] = detect_video(written, dataclasses.replace(config, key=KEY + 1)).z_score
    decoded = list(iter_frames(written, 25.0))
    row["z_crf28"] = detect_video(encoded(decoded, work / "crf28.mp4", 28), config).z_score
    upscaled = [cv2.resize(f, (2 * f.shape[1], 2 * f.shape[0]), interpolation=cv2.INTER_CUBIC) for f in decoded]
    row["z_upscaled_x2_crf23"] = detect_video(encoded(upscaled, work / "up.mp4", 23), config).z_score
    return row


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        print(json.dumps({Path(p).name: check(Path(p), Path(work)) for p in sys.argv[1:]}, indent=1))


if __name__ == "__main__":
    main()
