"""Render test frames of a trained run from several cameras into a contact sheet, for eyeballing and for
identity-distance checks of novel views: per test frame one row GT | front | yaw ±30 | pitch ±20, under it the
volume-rendered RGB before super-resolution, and the depth of each view (near = white).

    python scripts/render_views.py RUN_DIR DATASET_DIR OUT.png [--positions 10,40,70]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from deltaplane.data.dataset import ClipData, load_clip, make_batch
from deltaplane.geometry.cameras import orbit_cam2world
from deltaplane.inference import depth_to_uint8, load_run, to_uint8
from deltaplane.models.triplane_talker import TriplaneTalker

VIEWS = {"front": (0, 0), "yaw-30": (-30, 0), "yaw+30": (30, 0), "pitch-20": (0, -20), "pitch+20": (0, 20)}


@torch.no_grad()
def view_rows(model: TriplaneTalker, clip: ClipData, position: int) -> np.ndarray:
    """Three rows (RGB, raw RGB, depth) of tiles: GT then every view of `VIEWS`, for test-split row `position`."""
    device = model.identity_planes.device
    batch = make_batch(clip, torch.tensor([position], device=device), model.config.render_resolution)
    planes, _ = model.planes(model.tokens(batch.conditions))
    size, volume = model.config.output_resolution, model.config.volume

    def upsample(image: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(image, size=(size, size), mode="nearest")

    rgb, raw = [to_uint8(batch.images[0])], [to_uint8(upsample(batch.images_raw)[0])]
    depth = [np.zeros_like(rgb[0])]
    for yaw, pitch in VIEWS.values():
        cam2world = orbit_cam2world(torch.tensor([math.radians(yaw)]), torch.tensor([math.radians(pitch)]))
        cameras = type(batch.cameras)(cam2world.to(device), batch.cameras.intrinsics, batch.cameras.height,
                                      batch.cameras.width)
        output = model.render(planes, cameras, generator=torch.Generator(device=device).manual_seed(0),
                              torso=model.torso_transforms(batch.conditions.angles))
        rgb.append(to_uint8(output.rgb[0]))
        raw.append(to_uint8(upsample(output.rgb_raw)[0]))
        depth.append(depth_to_uint8(output.depth[0], volume.near, volume.far, size))
    return np.concatenate([np.concatenate(tiles, axis=1) for tiles in (rgb, raw, depth)], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--positions", default="10", help="rows of the test split, comma-separated")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, _, _ = load_run(args.run_dir, device)
    _, clip = load_clip(args.dataset, "test", size=model.config.output_resolution,
                        normalize_audio=model.config.audio.normalize, brows=model.config.conditions.brows)
    clip = clip.to(device)
    rows = [view_rows(model, clip, int(p)) for p in args.positions.split(",")]
    cv2.imwrite(str(args.output), np.concatenate(rows, axis=0)[..., ::-1])
    print(f"wrote {args.output}: GT | {' | '.join(VIEWS)}, raw RGB and depth under each")


if __name__ == "__main__":
    main()
