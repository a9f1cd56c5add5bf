"""Where a novel view draws the face, against where the tracked face mesh says a rigid head would put it
(docs/novel-views.md "Where the turned face lands").

    python scripts/view_face_offset.py DATASET RUN_DIR [--views yaw-30 yaw+30 pitch-20 pitch+20 front]

RUN_DIR holds a gpu_lip_motion run's `view_NAME.mp4` renders of the test split (frame i drives with test frame i,
seen from the orbit camera NAME). Each test frame's mesh (468 points) is lifted to world points along its own camera's
rays with its mean depth at the orbit pivot's (the look-at point every orbit camera shares), projected into the
view's orbit camera, and compared point by point with the mesh that the face tracker finds on the render. Prints,
per view, the frames with a face, the mean offset (x, y) in pixels of 512², the mean point distance, and that
distance for the nose and eye points alone. A lifting depth that is off by d moves the projected mesh sideways by
about d·sin(yaw) at yaw views, so only the differences between points are free of that choice. Where the frontal view
matches, a point drawn farther towards the frame's edge than the nose at a yaw view is drawn at another depth: the
near eye (the one on the camera's side) too deep, the far eye too shallow.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import numpy as np
import torch

from deltaplane.data.dataset import load_clip
from deltaplane.geometry.cameras import DEFAULT_PIVOT, Cameras, orbit_cam2world, project
from deltaplane.geometry.novel_view import lift_face_points
from deltaplane.media.video import iter_frames
from deltaplane.preprocess.landmarks import FaceTracker

POINTS = {"nose": [1, 4], "eye_right": [33, 133, 159, 145], "eye_left": [362, 263, 386, 374]}
"""mediapipe face-mesh indices: the nose tip, and each eye's corners and lid middles (right/left of the person)."""
VIEW_NAME = re.compile(r"^(?P<axis>yaw|pitch)(?P<degrees>[-+]\d+(\.\d*)?)$")
"""A view's name as gpu_lip_motion writes it: yaw-30, pitch+20 (and front)."""


def expected_mesh(dataset: Path, yaw_degrees: float, pitch_degrees: float) -> np.ndarray:
    """(frames, 468, 2): the test frames' tracked meshes seen from the orbit camera (yaw, pitch), 512² pixels."""
    _, clip = load_clip(dataset, "test", size=512)
    frames = clip.cam2world.shape[0]
    cameras = Cameras(clip.cam2world, clip.intrinsics, 512, 512)
    pivot = torch.tensor(DEFAULT_PIVOT)
    pivot_depth = torch.einsum("fk,fkj->fj", pivot - clip.cam2world[:, :3, 3], clip.cam2world[:, :3, :3])[:, 2:]
    world = lift_face_points(clip.face_points[:, :468], clip.face_point_valid[:, :468], pivot_depth, cameras)
    view = orbit_cam2world(torch.full((frames,), math.radians(yaw_degrees)),
                           torch.full((frames,), math.radians(pitch_degrees)))
    return project(world, view, clip.intrinsics).numpy()


def rendered_meshes(video: Path, frames: int) -> list[np.ndarray | None]:
    """The tracker's 468 mesh points (x, y) on each of the first `frames` frames of `video`, None where no face."""
    meshes: list[np.ndarray | None] = []
    with FaceTracker() as tracker:
        for rgb in iter_frames(video):
            if len(meshes) == frames:
                break
            observation = tracker.track(rgb)
            meshes.append(None if observation is None else observation.mesh[:468, :2])
    return meshes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("run", type=Path)
    parser.add_argument("--views", nargs="+", default=["front", "yaw-30", "yaw+30", "pitch-20", "pitch+20"])
    args = parser.parse_args()
    for name in args.views:
        match = VIEW_NAME.match(name)
        degrees = 0.0 if match is None else float(match["degrees"])  # front
        yaw, pitch = (0.0, degrees) if match is not None and match["axis"] == "pitch" else (degrees, 0.0)
        expected = expected_mesh(args.dataset, yaw, pitch)
        found = [(mesh, expected[i]) for i, mesh in enumerate(rendered_meshes(args.run / f"view_{name}.mp4",
                                                                            len(expected))) if mesh is not None]
        if not found:
            print(f"{name:9s} no face in any frame")
            continue
        offsets = np.stack([mesh - target for mesh, target in found])  # (found, 468, 2)
        parts = " ".join(f"{part} {np.linalg.norm(offsets[:, index].mean(1), axis=-1).mean():.1f}"
                         f" ({offsets[:, index, 0].mean():+.1f})" for part, index in POINTS.items())
        print(f"{name:9s} faces {len(found)}/{len(expected)}  offset x {offsets[..., 0].mean():+.1f} "
              f"y {offsets[..., 1].mean():+.1f}  distance {np.linalg.norm(offsets, axis=-1).mean():.1f}  "
              f"{parts}  [px at 512²; part: distance (x offset)]")


if __name__ == "__main__":
    main()
