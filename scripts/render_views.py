"""Render one test frame of a trained run from several cameras into a contact sheet (GT | views…), for eyeballing
and for identity-distance checks of novel views.

    python scripts/render_views.py RUN_DIR DATASET_DIR OUT.png [--position 10]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from deltaplane.data.dataset import load_clip, make_batch
from deltaplane.geometry.cameras import orbit_cam2world
from deltaplane.inference import load_run, to_uint8

VIEWS = {"front": (0, 0), "yaw-30": (-30, 0), "yaw+30": (30, 0), "pitch-20": (0, -20), "pitch+20": (0, 20)}


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--position", type=int, default=10, help="row of the test split")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, _, _ = load_run(args.run_dir, device)
    _, clip = load_clip(args.dataset, "test", size=model.config.output_resolution)
    clip = clip.to(device)
    batch = make_batch(clip, torch.tensor([args.position], device=device), model.config.render_resolution)
    planes, _ = model.planes(model.tokens(batch.conditions))
    tiles = [to_uint8(batch.images[0])]
    for yaw, pitch in VIEWS.values():
        cam2world = orbit_cam2world(torch.tensor([math.radians(yaw)]), torch.tensor([math.radians(pitch)]))
        cameras = type(batch.cameras)(cam2world.to(device), batch.cameras.intrinsics, batch.cameras.height,
                                      batch.cameras.width)
        output = model.render(planes, cameras, generator=torch.Generator(device=device).manual_seed(0))
        tiles.append(to_uint8(output.rgb[0]))
    sheet = np.concatenate(tiles, axis=1)
    cv2.imwrite(str(args.output), sheet[..., ::-1])
    print(f"wrote {args.output}: GT | {' | '.join(VIEWS)}")


if __name__ == "__main__":
    main()
