"""Where a novel view draws the face, against where the tracked face mesh says a rigid head would put it
(docs/novel-views.md "Where the turned face lands").

    python scripts/view_face_offset.py DATASET RUN_DIR [--views yaw-30 yaw+30 pitch-20 pitch+20 front]

RUN_DIR holds a gpu_lip_motion run's `view_NAME.mp4` renders of the test split (frame i drives with test frame i, seen
from the orbit camera NAME). Each test frame's mesh (468 points) is lifted to world points along its own camera's rays
with its mean depth at the orbit pivot's (the look-at point every orbit camera shares), projected into the view's
orbit camera (`geometry.novel_view.rigid_mesh_in_view`, as `deltaplane evaluate`'s `view/NAME/mesh_*`), and compared
point by point with the mesh that the face tracker finds on the render. Prints, per view, the frames with a face, the
mean offset (x, y) in pixels of the renders (512² for the shared clips), the mean point distance, and that distance
for the nose and eye points alone, and `deltaplane evaluate`'s two measures. A lifting depth that is off by d moves
the projected mesh sideways by about d·sin(yaw) at yaw views, so only the differences between points are free of that
choice. Where the frontal view matches, a point drawn farther towards the frame's edge than the nose at a yaw view is
drawn at another depth: the near eye (the one on the camera's side) too deep, the far eye too shallow.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from deltaplane.data.dataset import load_clip
from deltaplane.evaluation.face import IdentityEmbedder, mesh_view_metrics
from deltaplane.evaluation.run import DEFAULT_VIEWS, SplitMesh, parse_views
from deltaplane.evaluation.scoring import EvaluationConfig, load_experts, observe_video
from deltaplane.geometry.novel_view import rigid_mesh_in_view
from deltaplane.inference import camera_path
from deltaplane.media.video import iter_frames

POINTS = {"nose": [1, 4], "eye_right": [33, 133, 159, 145], "eye_left": [362, 263, 386, 374]}
"""mediapipe face-mesh indices: the nose tip, and each eye's corners and lid middles (right/left of the person)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("run", type=Path)
    parser.add_argument("--views", nargs="+", default=["front", "yaw-30", "yaw+30", "pitch-20", "pitch+20"])
    args = parser.parse_args()
    clip = load_clip(args.dataset, "test")[1]  # at the dataset's size, as gpu_lip_motion renders
    mesh, cameras = SplitMesh.of(clip, clip.frames.shape[-1]), parse_views(DEFAULT_VIEWS)
    valid = mesh.valid.numpy()
    config = EvaluationConfig(identity_every=10**9)  # the mesh alone: identity on the first frame only
    experts, embedder = load_experts(config, torch.device("cpu")), IdentityEmbedder()
    for name in args.views:
        cam2world = camera_path(cameras[name], len(clip))
        expected = rigid_mesh_in_view(mesh.points, mesh.valid, mesh.cameras, cam2world).numpy()
        observed = observe_video(iter_frames(args.run / f"view_{name}.mp4"), len(clip), config, experts,
                                 embedder).mesh[:len(clip)]
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
              f"{parts}  [px of the renders; part: distance (x offset)]  mesh/offset {metrics['mesh/offset']:.3f} "
              f"mesh/shape {metrics['mesh/shape']:.3f} [eye-corner distances]")


if __name__ == "__main__":
    main()
