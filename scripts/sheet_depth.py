"""Read depths back off a view sheet of scripts/render_views.py (or gpu_lip_motion.py's views.png): the depth tiles
are grey levels of `inference.depth_to_uint8` (near = white), so each level maps back to a ray depth. Prints, per
view of the first sheet row, the depth along the tile's middle row at 16 evenly spaced columns, for checking where
the face and the backdrop sit without the run's checkpoint.

    python scripts/sheet_depth.py views.png [--near NEAR --far FAR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from deltaplane.render.volume import VolumeRenderConfig
from render_views import VIEWS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sheet", type=Path)
    volume = VolumeRenderConfig()
    parser.add_argument("--near", type=float, default=volume.near, help="the run's VolumeRenderConfig.near")
    parser.add_argument("--far", type=float, default=volume.far, help="the run's VolumeRenderConfig.far")
    args = parser.parse_args()
    grey = cv2.imread(str(args.sheet), cv2.IMREAD_GRAYSCALE).astype(np.float64)
    tile = grey.shape[1] // (1 + len(VIEWS))  # GT, then one tile per view; rows: RGB, raw RGB, depth
    depth_row = grey[2 * tile:3 * tile]
    profiles = {}
    for column, name in enumerate(VIEWS, start=1):
        middle = depth_row[tile // 2 - 5:tile // 2 + 5, column * tile:(column + 1) * tile].mean(0)
        depths = args.far - middle / 255 * (args.far - args.near)
        profiles[name] = [round(float(d), 2) for d in depths[tile // 32::tile // 16]]
    print(json.dumps(profiles))


if __name__ == "__main__":
    main()
