"""Does the face-mesh depth prior hold novel views together? Train the `fast` preset with and without it for the
same time on one dataset, then write a view sheet per variant (scripts/render_views.py) and a table of held-out
PSNR/SSIM and face-depth error (logged by training whether or not the prior is on).

    python scripts/gpu_depth_prior.py DATASET WORK_DIR --minutes 3.5 [--variants prior,none]

Sheets go to $OUT/views_VARIANT.jpg, the table to $OUT/depth_prior.json (and stdout).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from deltaplane.data.dataset import load_clip
from deltaplane.inference import load_run
from deltaplane.presets import get_preset
from deltaplane.training.trainer import train

sys.path.insert(0, str(Path(__file__).parent))
from render_views import view_rows  # noqa: E402

SHEET_ROWS = 3
VARIANTS = {"prior": {}, "mesh": {"depth_spread": 0.0},
            "none": {"face_depth": 0.0, "depth_spread": 0.0, "background_depth": 0.0}}
"""Loss weights set to 0 per variant: every geometry prior (the default), the mesh depth and background hinge
without the depth-spread term, none of them."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--minutes", type=float, default=3.5)
    parser.add_argument("--variants", default="prior,none", help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--weights", default="", help="loss weights for every variant, e.g. depth_spread=50,mouth=10")
    args = parser.parse_args()
    out = Path(os.environ.get("OUT", "."))
    model_config, train_config = get_preset("fast")
    table = {}
    for variant in args.variants.split(","):
        overrides = {k: float(v) for k, v in (item.split("=") for item in args.weights.split(",") if item)}
        loss = dataclasses.replace(model_config.loss, **{**overrides, **VARIANTS[variant]})
        run_dir = args.work / variant
        result = train(args.dataset, run_dir, dataclasses.replace(model_config, loss=loss),
                       dataclasses.replace(train_config, max_minutes=args.minutes), "fast", torch.device("cuda"),
                       resume=True, progress=False)  # resume: a finished variant is only re-evaluated
        model, _, _ = load_run(run_dir, torch.device("cuda"))
        _, clip = load_clip(args.dataset, "test", size=model.config.output_resolution,
                            normalize_audio=model.config.audio.normalize)
        positions = np.linspace(0, len(clip) - 1, SHEET_ROWS + 2)[1:-1].round().astype(int)
        sheet = np.concatenate([view_rows(model, clip.to("cuda"), p) for p in positions], axis=0)
        cv2.imwrite(str(out / f"views_{variant}.jpg"), sheet[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        table[variant] = {"step": result.step, **{k: round(v, 5) for k, v in result.metrics.items()}}
        print(variant, table[variant], flush=True)
    (out / "depth_prior.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
