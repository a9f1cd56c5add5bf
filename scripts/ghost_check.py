"""Where the matter that side views show beside the head lies (docs/novel-views.md "Where the ghost is"), for a
trained run, with the field emptied outside the triplane's box and without (`TriplaneField.empty_outside`):

* the field's opacity per coarse interval at fixed distances behind the rendered surface of the person's opaque
  pixels (8 test frames, `SolidConfig.rays` rays each);
* for yaw ±30° views of one test frame, where each opaque ray (accumulation > 0.5) ends, seen from the frame's own
  camera: in front of its rendered surface, on it (±0.1), 0.1–0.3 / 0.3–0.5 / farther behind, or over the frame's
  backdrop (segmentation person < 0.5 there, or outside its image), with the share of the last class outside the box
  (with --ends, an image of the side views with every class tinted: `CLASS_COLOURS`);
* the frontal PSNR of the test split;
* with --sheet, the view sheet of `render_views.py` (RGB rows without, then with the box, then the depth with it).

With --xy-only the box is emptied only where a point leaves it sideways or vertically (x or y), keeping the space
behind it, where a whole-frame run's backdrop lies (docs/novel-views.md "Run 13": tried, not kept). With --fill a
whole-frame run is rendered with the box emptied over the dataset's background plate, as plate mode composites
(`data.background.background_plate`, `TriplaneTalker.render`): what the field leaves empty beside the head at side
views shows the backdrop instead of black (docs/novel-views.md "Run 24").

    python scripts/ghost_check.py RUN DATASET [--sheet OUT.png] [--ends ENDS.png] [--xy-only] [--fill] > ghost.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

import deltaplane.fields.triplane as triplane
from deltaplane.data.background import background_plate
from deltaplane.data.dataset import ClipData, load_clip, make_batch
from deltaplane.geometry.cameras import Cameras, orbit_cam2world, project
from deltaplane.geometry.rays import pixel_rays
from deltaplane.geometry.solid import points_behind
from deltaplane.inference import load_run
from deltaplane.models.triplane_talker import TriplaneTalker
from render_views import view_rows

OFFSETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
"""Distances behind the rendered surface (world units) of the opacity profile."""
CLASSES = ("front", "surface", "behind 0.1-0.3", "behind 0.3-0.5", "behind >0.5", "backdrop")
CLASS_COLOURS = np.array([[0, 0, 255], [0, 200, 0], [255, 255, 0], [255, 128, 0], [255, 0, 255], [255, 0, 0]],
                         dtype=np.uint8)
"""RGB tints of `CLASSES` in the --ends image: blue, green, yellow, orange, magenta, red."""


@torch.no_grad()
def opacity_profile(model: TriplaneTalker, clip: ClipData) -> dict[str, float]:
    batch = make_batch(clip, torch.from_numpy(np.linspace(0, len(clip) - 1, 8).round().astype(np.int64)),
                       model.config.render_resolution)
    planes = model.planes(model.tokens(batch.conditions))[0]
    output = model.render(planes, batch.cameras, plate_warp=batch.plate_warp)
    origins, directions, depth, chosen, valid, along = model._surface_rays(output, batch, False,
                                                                           torch.Generator().manual_seed(0))
    volume = model.config.volume
    profile = {}
    for offset in OFFSETS:
        points = points_behind(origins, directions, depth, chosen, along, offset, offset)
        _, optical = model._sample_optical_depth(planes, points, chosen, batch)
        inside = valid & (depth.gather(1, chosen) + offset < volume.far)
        profile[f"{offset:.1f}"] = ((-torch.expm1(-optical) * inside).sum() / inside.sum().clamp_min(1)).item()
    return profile


@torch.no_grad()
def ray_ends(model: TriplaneTalker, clip: ClipData, position: int = 10
             ) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    """The classes of the side views' ray ends, and an image of the two side views (raw RGB at the rendering
    resolution) above the same with each opaque ray tinted by its class (`CLASS_COLOURS`): where that matter is."""
    size = model.config.render_resolution
    batch = make_batch(clip, torch.tensor([position]), size)
    planes = model.planes(model.tokens(batch.conditions))[0]
    front = model.render(planes, batch.cameras, plate_warp=batch.plate_warp)
    frame = batch.cameras.resized(size, size)
    result, tiles = {}, []
    for yaw in (-30, 30):
        cameras = Cameras(orbit_cam2world(torch.tensor([math.radians(yaw)]), torch.tensor([0.0])),
                          batch.cameras.intrinsics, batch.cameras.height, batch.cameras.width)
        side = model.render(planes, cameras)
        origins, directions = pixel_rays(cameras.resized(size, size))
        ends = origins + side.depth.flatten(1)[..., None] * directions  # [1, R, 3]
        grid = (project(ends, frame.cam2world, frame.intrinsics) + 0.5) / size * 2 - 1  # pixel centres → [-1, 1]
        sample = lambda image: F.grid_sample(image.float().reshape(1, 1, size, size), grid[:, None],  # noqa: E731
                                             align_corners=False)[0, 0, 0]
        behind = (ends[0] - frame.cam2world[0, :3, 3]).norm(dim=-1) - sample(front.depth)
        opaque = side.accumulation.flatten() > 0.5
        backdrop = opaque & (sample(batch.person) < 0.5)  # zero padding: outside the frame's image counts too
        classes = [opaque & ~backdrop & mask for mask in (behind < -0.1, behind.abs() <= 0.1,
                                                           (behind > 0.1) & (behind <= 0.3),
                                                           (behind > 0.3) & (behind <= 0.5), behind > 0.5)]
        classes.append(backdrop)
        counts = [mask.sum().item() for mask in classes]
        outside = (ends[0].abs() > model.config.box_warp / 2).any(-1)
        result[f"yaw{yaw:+d}"] = {**{name: count / max(opaque.sum().item(), 1) for name, count in zip(CLASSES, counts)},
                                  "opaque_share": opaque.float().mean().item(),
                                  "backdrop_outside_box": (backdrop & outside).sum().item() / max(counts[-1], 1)}
        rgb = ((side.rgb_raw[0].permute(1, 2, 0).float().clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
        tinted = rgb.copy()
        for mask, colour in zip(classes, CLASS_COLOURS):
            marked = mask.reshape(size, size).numpy()
            tinted[marked] = rgb[marked] // 2 + colour // 2
        tiles.append(np.concatenate((rgb, tinted), axis=0))
    return result, np.concatenate(tiles, axis=1)


@torch.no_grad()
def test_psnr(model: TriplaneTalker, clip: ClipData) -> float:
    errors = []
    for start in range(0, len(clip), 10):
        batch = make_batch(clip, torch.arange(start, min(start + 10, len(clip))), model.config.render_resolution)
        output = model.render(model.planes(model.tokens(batch.conditions))[0], batch.cameras,
                              plate_warp=batch.plate_warp)
        errors.append(((output.rgb - batch.images) / 2).square().flatten(1).mean(1))  # [-1, 1] → [0, 1]
    return (-10 * torch.log10(torch.cat(errors))).mean().item()


def empty_outside_xy(points: torch.Tensor, density: torch.Tensor, box_warp: float) -> torch.Tensor:
    """`fields.triplane.empty_outside_box` on x and y only."""
    inside = (points[..., :2].abs() <= box_warp / 2).all(dim=-1, keepdim=True)
    return torch.where(inside, density, density.new_full((), triplane.OUTSIDE_DENSITY))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--sheet", type=Path, help="also write the view sheets without and with the box")
    parser.add_argument("--xy-only", action="store_true", help="empty the box only along x and y")
    parser.add_argument("--fill", action="store_true", help="with the box emptied, composite over the plate")
    parser.add_argument("--ends", type=Path, help="also write the side views with their rays tinted by class "
                                                  "(yaw −30° | +30°; rows: the views, then tinted, without the box, "
                                                  "then both with it; 4× nearest-neighbour)")
    args = parser.parse_args()
    if args.xy_only:  # the field calls the module's function: measure the variant without a field option for it
        triplane.empty_outside_box = empty_outside_xy
    model, _, _ = load_run(args.run, torch.device("cpu"))
    _, clip = load_clip(args.dataset, "test", size=model.config.output_resolution,
                        normalize_audio=model.config.audio.normalize)
    if args.fill:  # the same weights in fill mode (`TriplaneTalkerConfig.background`): only the plate is new
        filled = TriplaneTalker(dataclasses.replace(model.config, background="fill")).eval()
        missing, unexpected = filled.load_state_dict(model.state_dict(), strict=False)
        assert not unexpected and all(name.startswith("plate") for name in missing), (missing, unexpected)
        _, train_clip = load_clip(args.dataset, "train", size=model.config.output_resolution)
        filled.load_background_plate(*background_plate(args.dataset, train_clip))
    report, rows, ends, size = {}, [], [], model.config.output_resolution
    for empty in (False, True):
        model.field.empty_outside = empty
        if empty and args.fill:
            model = filled
        classes, image = ray_ends(model, clip)
        ends.append(image)
        report["box" if empty else "no_box"] = {"opacity_behind_surface": opacity_profile(model, clip),
                                                "side_ray_ends": classes, "test_psnr": test_psnr(model, clip)}
        if args.sheet:
            sheet = view_rows(model, clip, 10)
            rows += [sheet[:size]] + ([sheet[2 * size:]] if empty else [])
    if args.sheet:
        cv2.imwrite(str(args.sheet), np.concatenate(rows, axis=0)[..., ::-1])
    if args.ends:
        cv2.imwrite(str(args.ends), np.concatenate(ends, axis=0).repeat(4, axis=0).repeat(4, axis=1)[..., ::-1])
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
