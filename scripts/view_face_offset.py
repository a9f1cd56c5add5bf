"""Where a novel view draws the face, against where the tracked face mesh says a rigid head would put it
(docs/novel-views.md "Where the turned face lands").

    python scripts/view_face_offset.py DATASET RUN_DIR [--views yaw-30 yaw+30 pitch-20 pitch+20 front]

RUN_DIR holds a gpu_lip_motion run's `view_NAME.mp4` renders of the test split (frame i drives with test frame i, seen
from the orbit camera NAME). Each test frame's mesh (468 points) is lifted to world points along its own camera's rays
with its mean depth at the orbit pivot's (the look-at point every orbit camera shares), projected into the view's
orbit camera (`geometry.novel_view.rigid_mesh_in_view`, as `deltaplane evaluate`'s `view/NAME/mesh_*`), and compared
point by point with the mesh that the face tracker finds on the render. Prints, per view, the frames with a face, the
mean offset (x, y) in pixels of 512², the mean point distance, and that distance for the nose and eye points alone,
and `deltaplane evaluate`'s two measures. A lifting depth that is off by d moves the projected mesh sideways by about
d·sin(yaw) at yaw views, so only the differences between points are free of that choice. Where the frontal view
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
from deltaplane.evaluation.face import mesh_view_metrics
from deltaplane.geometry.cameras import Cameras, orbit_cam2world
from deltaplane.geometry.face_depth import FACE_VERTICES
from deltaplane.geometry.novel_view import rigid_mesh_in_view
from deltaplane.media.video import iter_frames
from deltaplane.preprocess.landmarks import FaceTracker

POINTS = {"nose": [1, 4], "eye_right": [33, 133, 159, 145], "eye_left": [362, 263, 386, 374]}
"""mediapipe face-mesh indices: the nose tip, and each eye's corners and lid middles (right/left of the person)."""
VIEW_NAME = re.compile(r"^(?P<axis>yaw|pitch)(?P<degrees>[-+]\d+(\.\d*)?)$")
"""A view's name as gpu_lip_motion writes it: yaw-30, pitch+20 (and front)."""


def expected_mesh(dataset: Path, yaw_degrees: float, pitch_degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """The test frames' tracked meshes seen from the orbit camera (yaw, pitch), (frames, 468, 2) pixels of 512², and
    which of their points the tracking gave (frames, 468)."""
    _, clip = load_clip(dataset, "test", size=512)
    frames = clip.cam2world.shape[0]
    view = orbit_cam2world(torch.full((frames,), math.radians(yaw_degrees)),
                           torch.full((frames,), math.radians(pitch_degrees)))
    points, valid = clip.face_points[:, :FACE_VERTICES], clip.face_point_valid[:, :FACE_VERTICES]
    cameras = Cameras(clip.cam2world, clip.intrinsics, 512, 512)
    return rigid_mesh_in_view(points, valid, cameras, view).numpy(), valid.numpy()


def rendered_meshes(video: Path, frames: int) -> np.ndarray:
    """The tracker's 468 mesh points (x, y) on each of the first `frames` frames of `video`, NaN where no face."""
    meshes = np.full((frames, FACE_VERTICES, 2), np.nan, np.float32)
    with FaceTracker() as tracker:
        for index, rgb in zip(range(frames), iter_frames(video)):
            observation = tracker.track(rgb)
            if observation is not None:
                meshes[index] = observation.mesh[:FACE_VERTICES, :2]
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
        expected, valid = expected_mesh(args.dataset, yaw, pitch)
        observed = rendered_meshes(args.run / f"view_{name}.mp4", len(expected))
        metrics, skipped = mesh_view_metrics(observed, expected, valid)
        if skipped:
            print(f"{name:9s} no face in any frame")
            continue
        found = np.isfinite(observed).all((1, 2))
        offsets = np.where(valid[found, :, None], observed[found] - expected[found], np.nan)  # (found, 468, 2)
        parts = " ".join(f"{part} {np.linalg.norm(np.nanmean(offsets[:, index], 1), axis=-1).mean():.1f}"
                         f" ({np.nanmean(offsets[:, index, 0]):+.1f})" for part, index in POINTS.items())
        print(f"{name:9s} faces {found.sum()}/{len(expected)}  offset x {np.nanmean(offsets[..., 0]):+.1f} "
              f"y {np.nanmean(offsets[..., 1]):+.1f}  distance {np.nanmean(np.linalg.norm(offsets, axis=-1)):.1f}  "
              f"{parts}  [px at 512²; part: distance (x offset)]  mesh/offset {metrics['mesh/offset']:.3f} "
              f"mesh/shape {metrics['mesh/shape']:.3f} [eye-corner distances]")


if __name__ == "__main__":
    main()
