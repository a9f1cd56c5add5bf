"""Where the rendered head stands in depth (docs/novel-views.md "The angle token"): renders one test frame of a run
from orbit cameras at yaw 0 and ±30° (pitch 0) and prints, per camera, the rendered depth at the centre pixel,
the depths along the middle row (every eighth of the width), and the world point the centre ray ends on.

    python scripts/card_depth_probe.py RUN_DIR DATASET [--position 10]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from deltaplane.data.dataset import load_clip, make_batch
from deltaplane.geometry.cameras import Cameras, orbit_cam2world
from deltaplane.inference import load_run


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--position", type=int, default=10, help="test-split row")
    args = parser.parse_args()
    model, _, _ = load_run(args.run, torch.device("cpu"))
    _, clip = load_clip(args.dataset, "test", size=model.config.output_resolution,
                        normalize_audio=model.config.audio.normalize)
    batch = make_batch(clip, torch.tensor([args.position]), model.config.render_resolution)
    for yaw in (0.0, -30.0, 30.0):
        cam2world = orbit_cam2world(torch.tensor([math.radians(yaw)]), torch.tensor([0.0]))
        cameras = Cameras(cam2world, batch.cameras.intrinsics, batch.cameras.height, batch.cameras.width)
        output, _ = model(cameras, batch.conditions)
        depth = output.depth[0, 0]
        size = depth.shape[0]
        centre = float(depth[size // 2, size // 2])
        end = cam2world[0, :3, 3] + cam2world[0, :3, 2] * centre  # the centre ray is the camera's +z
        row = ", ".join(f"{float(value):.2f}" for value in depth[size // 2, ::max(size // 8, 1)])
        print(f"yaw {yaw:+.0f}°: centre depth {centre:.3f}, middle row [{row}], centre ray ends at "
              f"({', '.join(f'{float(value):.3f}' for value in end)})")


if __name__ == "__main__":
    main()
