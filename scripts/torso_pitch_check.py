"""Why obama's torso speckles on frames pitched down (docs/novel-views.md "Speckle on the torso"): the numbers of
that section, from a returned run directory and its dataset.

    python scripts/torso_pitch_check.py RUN_DIR DATASET

1. Dark specks (`score_lip_renders.dark_specks`) per frame of the run's test renders (test.mp4, and with
   `--renders` others such as test_random.mp4) in the collar region, against the test frame's tracked pitch: their
   correlation, the mean share below and above −3°, and the region's PSNR against test_gt.mp4 in both groups.
2. The collar line in the training frames (the top row where the parsing mask's torso label fills half of the
   middle 40 % of the width) against the tracked pitch: pixels per degree, and where the line lies in the world at
   the shirt's depth.
3. How far a point on the collar line's ray moves per degree of the orbit camera's pitch at several depths: the
   depth at which a torso holds still while the head's camera pitches.
4. Where the specked rays end: in views.png's depth tiles (first test frame), pixels at least 30 grey levels nearer
   than their 5 × 5 median in the shirt region, their depth against their median's.
5. Whether the torso holds still in the original video, as the backdrop does: the training frames' torso masks in
   the aligned crop and resampled into the background plate's frame (`ClipData.plate_warps`, docs/background.md):
   the collar line's spread and the masks' overlap with the first frame's, in both; and in the crop, how much of
   the head's pitch and yaw the torso follows (collar line against pitch, the shoulders' centre against yaw).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from deltaplane.data.background import cv2_affine
from deltaplane.data.dataset import load_clip
from deltaplane.data.schema import parsing_path
from deltaplane.geometry.cameras import (DEFAULT_FOCAL, DEFAULT_RADIUS, intrinsics_from_focal, orbit_cam2world,
                                        project, unproject)
from deltaplane.render.volume import VolumeRenderConfig
from render_views import VIEWS
from score_lip_renders import dark_specks, frames

COLLAR = ((330, 512), (130, 400))
"""Rows and columns of the 512² frame around obama's collar and tie (scaled for other sizes: `collar_region`)."""
PITCH_SPLIT = -3.0
"""Degrees: the frames pitched down, below it, against the others."""
TORSO_LABEL = 1
"""`data.schema.PARSING_LABELS`' torso."""
MIDDLE = (0.3, 0.7)
"""Columns, as shares of the width, where the collar line is read."""
SHIRT_DEPTH = 2.63
"""Ray depth of the shirt at the collar line (the depth tile's median there)."""
TILE = 512


def collar_region(size: int) -> tuple[slice, slice]:
    """`COLLAR` in a size² frame (the tiny preset's renders are 128²)."""
    return tuple(slice(int(start * size / TILE), int(stop * size / TILE)) for start, stop in COLLAR)


def collar_specks(run: Path, dataset: Path, render_name: str) -> None:
    _, test = load_clip(dataset, "test", size=TILE)
    pitch = np.degrees(test.angles[:, 1].numpy())
    specks, psnr = [], []
    for render, truth in zip(frames(run / f"{render_name}.mp4")[0], frames(run / "test_gt.mp4")[0]):
        region = collar_region(render.shape[0])
        specks.append(dark_specks(render)[region].mean())
        error = (render[region].astype(np.float64) - truth[region]) ** 2
        psnr.append(10 * math.log10(255**2 / error.mean()))
    specks, psnr, down = np.array(specks), np.array(psnr), pitch[: len(specks)] < PITCH_SPLIT
    correlation = np.corrcoef(specks, pitch[:len(specks)])[0, 1] if specks.std() > 0 else float("nan")
    print(f"{render_name} collar specks: correlation with pitch {correlation:+.2f}; share "
          f"below {PITCH_SPLIT}° ({down.sum()} frames) {specks[down].mean():.2e}, above {specks[~down].mean():.2e}; "
          f"region PSNR {psnr[down].mean():.2f} / {psnr[~down].mean():.2f} dB")


def collar_row(torso: np.ndarray) -> float:
    """The top row where the torso mask fills half of the middle columns (NaN: none does)."""
    width = torso.shape[1]
    filled = np.nonzero(torso[:, int(MIDDLE[0] * width):int(MIDDLE[1] * width)].mean(1) > 0.5)[0]
    return float(filled.min()) if filled.size else np.nan


def collar_line(dataset: Path) -> None:
    _, train = load_clip(dataset, "train", size=TILE)
    pitch = np.degrees(train.angles[:, 1].numpy())
    rows = []
    for index in train.indices.tolist():
        label = cv2.imread(str(parsing_path(dataset, index)), cv2.IMREAD_UNCHANGED)
        rows.append(collar_row(label == TORSO_LABEL) * TILE / label.shape[0])
    rows = np.array(rows)
    found = ~np.isnan(rows)
    slope, intercept = np.polyfit(pitch[found], rows[found], 1)
    residual = rows[found] - (slope * pitch[found] + intercept)
    camera = orbit_cam2world(torch.tensor(0.0), torch.tensor(0.0))
    intrinsics = intrinsics_from_focal(DEFAULT_FOCAL, TILE, TILE)[0]

    def world_y(row: float) -> float:
        pixel = torch.tensor([[TILE / 2, float(row)]])
        return unproject(pixel, torch.tensor([SHIRT_DEPTH]), camera, intrinsics)[0, 1].item()

    median, low = np.median(rows[found]), np.percentile(rows[found], 5)
    print(f"collar line: {slope:+.2f} px per degree of pitch (correlation "
          f"{np.corrcoef(pitch[found], rows[found])[0, 1]:.2f}, residual std {residual.std():.1f} px); pitch "
          f"2nd–98th percentile {np.percentile(pitch, 2):.1f}° to {np.percentile(pitch, 98):.1f}°; median row "
          f"{median:.0f} (world y {world_y(median):+.3f}), 5th percentile {low:.0f} (y {world_y(low):+.3f})")


def parallax() -> None:
    for axis, name in ((1, "pitch"), (0, "yaw")):
        for z in (-0.3, -0.15, 0.0, 0.15, 0.3):
            print(f"a point on the collar's ray at world z {z:+.2f} moves {point_motion(z, axis):+.2f} px per degree "
                  f"of {name}")


def point_motion(z: float, axis: int) -> float:
    """Pixels per degree that a point of the head's frame on the collar line's ray (frontal camera), moved to world
    depth `z`, moves along image axis `axis` (1: rows, under the orbit camera's pitch; 0: columns, under its yaw)."""
    intrinsics = intrinsics_from_focal(DEFAULT_FOCAL, TILE, TILE)[0]
    front = orbit_cam2world(torch.tensor(0.0), torch.tensor(0.0))
    point = unproject(torch.tensor([[TILE / 2, 420.0]]), torch.tensor([DEFAULT_RADIUS]), front, intrinsics)
    point[..., 2] = z
    turned = [project(point, orbit_cam2world(*(torch.tensor(math.radians(degrees if i == axis else 0.0))
                                                 for i in range(2))), intrinsics)[0, axis].item()
              for degrees in (-3.0, 3.0)]
    return (turned[1] - turned[0]) / 6


def specked_depths(run: Path) -> None:
    if not (run / "views.png").exists():
        print("no views.png (a run without --views): no depth tiles")
        return
    sheet = cv2.imread(str(run / "views.png"), cv2.IMREAD_GRAYSCALE)
    volume = VolumeRenderConfig()  # the `fast` preset keeps its near and far
    for column, name in enumerate(VIEWS, start=1):
        if name not in ("front", "pitch-20"):
            continue
        tile = sheet[2 * TILE:3 * TILE, column * TILE:(column + 1) * TILE][380:512, 150:360]  # depth row, shirt
        median = cv2.medianBlur(tile, 5)
        nearer = tile.astype(np.int16) - median >= 30

        def depth(grey: np.ndarray) -> float:  # inverse of inference.depth_to_uint8 (near = white)
            return float(np.median(volume.far - grey / 255 * (volume.far - volume.near)))

        if nearer.any():
            print(f"{name}: {nearer.mean():.4f} of the shirt's depth pixels end nearer than their median, at "
                  f"{depth(tile[nearer]):.2f} against {depth(median[nearer]):.2f}")


def torso_stillness(dataset: Path) -> None:
    _, train = load_clip(dataset, "train", size=TILE)
    warps = train.plate_warps.double().numpy()
    warps[:, :, 2] *= TILE  # units of the side → pixels
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    masks = {"aligned crop": [], "plate frame": []}
    for index in range(len(train)):
        torso = (train.parsing[index, 0].numpy() == TORSO_LABEL).astype(np.float32)
        masks["aligned crop"].append(torso > 0.5)
        masks["plate frame"].append(cv2.warpAffine(torso, cv2_affine(warps[index]), (TILE, TILE), flags=flags) > 0.5)
    for name, stack in masks.items():
        stack = np.stack(stack)
        overlap = (stack & stack[0]).sum((1, 2)) / np.maximum((stack | stack[0]).sum((1, 2)), 1)
        print(f"torso in the {name}: collar line std {np.nanstd([collar_row(mask) for mask in stack]):.1f} px, "
              f"mean IoU with the first frame's {overlap.mean():.3f}")
    # How much of the head's turn the torso follows in the aligned crop: its image motion per degree against a
    # point turning with the head (`point_motion`) at the pivot's depth and 0.15 behind it.
    crop = np.stack(masks["aligned crop"])
    rows = np.array([collar_row(mask) for mask in crop])
    band = crop[:, int(0.85 * TILE):]  # the shoulders' band at the bottom of the frame
    columns = (band * np.arange(TILE)).sum((1, 2)) / np.maximum(band.sum((1, 2)), 1)
    degrees = np.degrees(train.angles.numpy())
    for axis, name, motion in ((1, "pitch", rows), (0, "yaw", columns)):
        found = np.isfinite(motion)
        slope = np.polyfit(degrees[found, axis], motion[found], 1)[0]
        print(f"torso follows {name}: {slope:+.2f} px per degree (correlation "
              f"{np.corrcoef(degrees[found, axis], motion[found])[0, 1]:+.2f}), "
              f"{slope / point_motion(0.0, axis):.2f} of a point at z 0 turning with the head, "
              f"{slope / point_motion(-0.15, axis):.2f} at z −0.15")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory returned by gpu_lip_motion.py --views")
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--renders", default="test", help="comma-separated test renders of the run (test_random, ...)")
    args = parser.parse_args()
    for name in args.renders.split(","):
        collar_specks(args.run, args.dataset, name)
    collar_line(args.dataset)
    parallax()
    specked_depths(args.run)
    torso_stillness(args.dataset)


if __name__ == "__main__":
    main()
