"""Mouth crops of every test frame of a gpu_lip_motion run, its videos row under row, to look for seams and doubled
lips that the mouth metrics average away (docs/lip-motion.md "Run 14").

    python scripts/mouth_sheet.py DATASET RUN_DIR -o sheet.png [--videos test_gt test test_teacher test_teacher_snapped]
        [--region mouth|eyes|hair]

Each crop is centred on the ground truth's tracked mouth of that frame (the dataset's aligned landmarks, scaled to
the render's size: the renders share the aligned frame), so the rows differ only in what was rendered. Rows hold
`--columns` frames; the videos of one stretch of frames follow each other. `--region eyes` (eyes and brows) or `hair`
crops as the report's detail sheet does (`evaluation.face.detail_crops`), to look at the brows and the forehead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from deltaplane.evaluation.face import detail_crops, mouth_crop
from deltaplane.evaluation.report import contact_sheet
from deltaplane.media.video import iter_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("run", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--videos", nargs="+", default=["test_gt", "test", "test_teacher", "test_teacher_snapped"])
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--size", type=int, default=80, help="side of each crop in pixels")
    parser.add_argument("--region", choices=("mouth", "eyes", "hair"), default="mouth")
    args = parser.parse_args()
    manifest = json.loads((args.dataset / "manifest.json").read_text())
    test = manifest["splits"]["test"]
    landmarks = np.load(args.dataset / "tracks.npz")["landmarks_aligned"][test]  # pixels of the dataset's frames

    def crop(rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        if args.region == "mouth":
            return mouth_crop(rgb, points, args.size)
        return detail_crops(rgb, points, args.size)[args.region]

    def crops(name: str) -> list[np.ndarray]:
        # the renders may be smaller than the dataset's frames (the tiny preset's 128²): same frame, other scale
        return [crop(rgb, points * (rgb.shape[1] / manifest["image_size"]))
                for rgb, points in zip(iter_frames(args.run / f"{name}.mp4"), landmarks)]

    videos = {name: crops(name) for name in args.videos}
    rows = []
    for start in range(0, len(test), args.columns):
        for name, crops in videos.items():
            rows.append((f"{name} {start}", tuple(enumerate(crops[start:start + args.columns], start))))
    sheet = contact_sheet([(label, crops) for label, crops in rows if crops])
    cv2.imwrite(str(args.output), sheet[..., ::-1])
    print(f"wrote {args.output} ({len(test)} frames, {', '.join(videos)})")


if __name__ == "__main__":
    main()
