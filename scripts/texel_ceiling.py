"""How much of the ground truth's fine detail can tri-planes of a given resolution hold at the face
(docs/sharpness.md "What the planes can hold")? On the CPU, from a dataset.

    python scripts/texel_ceiling.py DATASET [--resolutions 256,384,512,768]

A texel of a plane of resolution R spans box_warp / R world units (`TriplaneTalkerConfig.box_warp`, 1); at the face
(the cameras' distance to the pivot) that is so many output pixels (focal / distance). Each test frame is shrunk by
that factor with area averaging and enlarged back bilinearly, as a bilinear texel grid would draw it, and its
Laplacian energy in the face box (`evaluation.pixels.laplacian_variance`) is divided by the frame's: the
`sharpness_ratio` that a field drawing the truth exactly at that resolution would score, before any
super-resolution. An estimate: the decoder's nonlinearity can draw edges sharper than a texel, and the features of
three planes add up.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from deltaplane.data.dataset import box_mask, load_clip
from deltaplane.evaluation.pixels import laplacian_variance
from deltaplane.geometry.cameras import DEFAULT_PIVOT
from deltaplane.models.triplane_talker import TriplaneTalkerConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--resolutions", default="256,384,512,768", help="plane resolutions, comma-separated")
    parser.add_argument("--frames", type=int, default=25, help="test frames used (evenly spaced)")
    args = parser.parse_args()
    _, test = load_clip(args.dataset, "test")
    size = test.frames.shape[-1]
    distance = float((test.cam2world[:, :3, 3] - test.cam2world.new_tensor(DEFAULT_PIVOT)).norm(dim=-1).mean())
    pixel = distance / float(test.intrinsics[:, 0, 0].mean())  # world units per output pixel at the face
    picked = np.linspace(0, len(test) - 1, min(args.frames, len(test))).round().astype(int)
    for resolution in (int(value) for value in args.resolutions.split(",")):
        factor = TriplaneTalkerConfig.box_warp / resolution / pixel  # output pixels per texel
        ratios = []
        for index in picked:
            image = test.frames[index].permute(1, 2, 0).numpy()
            small = cv2.resize(image, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)
            drawn = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
            mask = box_mask(test.face_boxes[index:index + 1], size)[0, 0].numpy()
            ratios.append(laplacian_variance(drawn, mask) / laplacian_variance(image, mask))
        print(f"planes {resolution}²: a texel spans {factor:.2f} output px at the face; sharpness ratio "
              f"{np.mean(ratios):.3f} (min {np.min(ratios):.3f}, {len(ratios)} test frames)")


if __name__ == "__main__":
    main()
