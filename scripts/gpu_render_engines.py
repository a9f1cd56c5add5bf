"""`deltaplane render` end to end with each engine (mp4 with AAC, watermark on): wall time per engine, the PSNR
between the two decoded videos, and whether the watermark is found in each.

    python scripts/gpu_render_engines.py RUN_DIR AUDIO [--camera orbit] [--train DATASET --minutes 0.75]

With --train, RUN_DIR is first trained (fast preset) on DATASET for that long. The videos go to $OUT (or .).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from deltaplane import api
from deltaplane.media.video import iter_frames
from deltaplane.watermark import detect_video

ENGINES = ("reference", "fast")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("audio", type=Path)
    parser.add_argument("--camera", default="orbit")
    parser.add_argument("--train", type=Path, metavar="DATASET")
    parser.add_argument("--minutes", type=float, default=0.75)
    args = parser.parse_args()
    out = Path(os.environ.get("OUT", "."))
    if args.train is not None:
        api.train(args.train, args.run_dir, preset="fast", minutes=args.minutes, progress=False)
    frames, rows = {}, []
    for engine in ENGINES:
        started = time.perf_counter()
        video = api.render(args.run_dir, args.audio, out / f"{engine}.mp4", camera=args.camera, progress=False,
                           engine=engine)
        seconds = time.perf_counter() - started
        frames[engine] = np.stack(list(iter_frames(video))).astype(np.float64)
        rows.append((engine, frames[engine].shape[0], seconds, detect_video(video).detected))
    mse = np.mean((frames["fast"] - frames["reference"]) ** 2)
    print(f"device: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'} | torch {torch.__version__}"
          f" | camera {args.camera} | audio {args.audio.name}")
    print(f"{'engine':<10} {'frames':>6} {'wall s':>7} {'watermark':>9}")
    for engine, count, seconds, detected in rows:
        print(f"{engine:<10} {count:>6} {seconds:>7.1f} {str(detected):>9}")
    print(f"PSNR fast vs reference (decoded H.264): {10 * np.log10(255 ** 2 / mse):.1f} dB")


if __name__ == "__main__":
    main()
