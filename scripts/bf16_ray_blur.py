"""How much did bf16 training rays blur the field? (docs/sharpness.md "Rays in bf16"): the numbers of that section,
from a dataset, on the CPU.

    python scripts/bf16_ray_blur.py DATASET [--render 256] [--frames 400]

Until session 37 the trainer's bf16 autocast rounded `pixel_rays`' camera product to bf16 (`pixel_rays.__wrapped__`
under CPU bf16 autocast reproduces it); renders cast float32 rays. For the training split's cameras at the
rendering resolution, each pixel's bf16 ray is followed to the face's distance (the camera's distance to the world
origin, where the head box is centred, less `--face-offset`) and projected back with the float32 camera: its
displacement in render pixels. A world point of the face is seen at about the same pixel in every frame (aligned
crops), so the field learns there the average of the frames' colours displaced by that pixel's displacements: a blur
whose kernel is their spread over frames (and a shift by their mean). Prints both over the face box, then the
Laplacian-energy ratio (`evaluation.pixels.laplacian_variance`, face box) of test frames blurred by a Gaussian of
that spread at the output resolution: what that blur alone would cost the `sharpness_ratio`. First, the same
displacement for three orbit cameras (`ORBITS`) and the training frames' tracked yaw/pitch spread; `--map PNG`
saves the frontal camera's x and y displacements side by side (grey 128 = none, ±1 render px = ±127).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from deltaplane.data.dataset import box_mask, load_clip
from deltaplane.evaluation.pixels import laplacian_variance
from deltaplane.geometry.cameras import Cameras, orbit_cameras, project
from deltaplane.geometry.rays import pixel_rays


ORBITS = {"frontal": (0.0, 0.0, 0.0), "yaw 0.12": (0.12, 0.05, 0.03), "yaw -0.2": (-0.2, -0.08, -0.02)}
"""(yaw, pitch, roll) in radians of orbit cameras like the tracked ones."""


def bf16_rays(cameras: Cameras) -> tuple[torch.Tensor, torch.Tensor]:
    """`pixel_rays` as the trainer's bf16 autocast cast them before session 37: origins, unit directions (float32
    holding the bf16-rounded camera product)."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        origins, directions = pixel_rays.__wrapped__(cameras)
    return origins, torch.nn.functional.normalize(directions.float(), dim=-1)


def displacements(cameras: Cameras, face_offset: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each pixel's bf16 ray meets the face's distance: its displacement in render pixels [B, H·W, 2] and
    its distance from the float32 ray's point in world units [B, H·W]."""
    origins, directions = pixel_rays(cameras)
    _, rounded = bf16_rays(cameras)
    distance = origins[:, :1].norm(dim=-1, keepdim=True) - face_offset  # [B, 1, 1]
    points = origins + distance * rounded
    pixels = project(points, cameras.cam2world, cameras.intrinsics)  # [B, R, 2]
    rows, cols = torch.meshgrid(torch.arange(cameras.height) + 0.5, torch.arange(cameras.width) + 0.5, indexing="ij")
    world = (points - origins - distance * directions).norm(dim=-1)
    return pixels - torch.stack((cols, rows), dim=-1).reshape(1, -1, 2), world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--render", type=int, default=256, help="rendering resolution (the fast preset's)")
    parser.add_argument("--output", type=int, default=512, help="output resolution")
    parser.add_argument("--frames", type=int, default=400, help="training frames used (evenly spaced)")
    parser.add_argument("--face-offset", type=float, default=0.1, help="face's distance in front of the origin")
    parser.add_argument("--map", type=Path, help="PNG of the frontal camera's x | y displacements")
    args = parser.parse_args()
    for name, angles in ORBITS.items():
        yaw, pitch, roll = (torch.tensor([angle]) for angle in angles)
        moved, world = displacements(orbit_cameras(yaw, pitch, args.render, args.render, roll=roll),
                                     args.face_offset)
        sideways = moved.norm(dim=-1)
        print(f"orbit {name}: displacement mean {sideways.mean():.2f} / max {sideways.max():.2f} render px, "
              f"{(sideways > 0.5).float().mean():.0%} over 0.5 px, at the face max {world.max():.4f} world units")
        if args.map is not None and name == "frontal":
            grey = (128 + 127 * moved[0].clamp(-1, 1)).round().byte().reshape(args.render, args.render, 2).numpy()
            cv2.imwrite(str(args.map), np.concatenate((grey[..., 0], grey[..., 1]), axis=1))
    _, train = load_clip(args.dataset, "train", size=args.output)
    spread = torch.rad2deg(train.angles[:, :2]).std(0)
    print(f"tracked training frames: yaw std {spread[0]:.1f}°, pitch std {spread[1]:.1f}°")
    picked = torch.linspace(0, len(train) - 1, min(args.frames, len(train))).round().long()
    cameras = Cameras(train.cam2world[picked], train.intrinsics[picked], args.output, args.output)
    cameras = cameras.resized(args.render, args.render)
    total, squares, rms = torch.zeros(args.render ** 2, 2), torch.zeros(args.render ** 2, 2), []
    for start in range(0, len(picked), 25):
        moved = displacements(cameras[start:start + 25], args.face_offset)[0].double()
        total += moved.sum(0)
        squares += moved.square().sum(0)
        rms.append(moved.square().sum(-1).mean(1).sqrt())
    mean = total / len(picked)
    spread = (squares / len(picked) - mean.square()).clamp_min(0).sqrt()  # [R, 2]: per axis, over frames

    box = (train.face_boxes[picked].mean(0) * args.render / args.output).round().long().tolist()
    face = torch.zeros(args.render, args.render, dtype=torch.bool)
    face[max(box[1], 0):box[3], max(box[0], 0):box[2]] = True
    face = face.flatten()
    sigma = spread[face].mean(0)  # render px, (x, y)
    print(f"{len(picked)} training frames, {args.render}² rays, face box {box}")
    print(f"displacement per frame, RMS over the image: mean {torch.cat(rms).mean():.3f} px")
    print(f"face box: spread over frames x {sigma[0]:.3f} / y {sigma[1]:.3f} render px "
          f"(max {spread[face].max():.3f}); mean shift {mean[face].norm(dim=-1).mean():.3f} px")

    _, test = load_clip(args.dataset, "test", size=args.output)
    scale = args.output / args.render
    ratios = []
    for index in range(0, len(test), max(len(test) // 20, 1)):
        image = test.frames[index].permute(1, 2, 0).numpy()
        blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigma[0]) * scale, sigmaY=float(sigma[1]) * scale)
        mask = box_mask(test.face_boxes[index:index + 1], args.output)[0, 0].numpy()
        ratios.append(laplacian_variance(blurred, mask) / laplacian_variance(image, mask))
    print(f"Gaussian σ = ({sigma[0] * scale:.2f}, {sigma[1] * scale:.2f}) output px on {len(ratios)} test frames: "
          f"sharpness ratio {np.mean(ratios):.3f} (min {np.min(ratios):.3f})")


if __name__ == "__main__":
    main()
