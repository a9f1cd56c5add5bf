"""How far a clip's brows move, and how much of it the other condition tokens already say
(docs/sharpness.md "The brows"): per dataset, the standard deviation of each brow's height over its eye
(`geometry.face_regions.brow_heights`, in inter-ocular distances and in pixels of the aligned frames), the two
brows' correlation, and the share of their mean's variance that a linear fit explains from the eye openness, the
head angles and the 6-D landmark feature (the tokens a model without `ConditionEncoderConfig.brows` has).

    python scripts/brow_motion.py DATA/CLIP_a05 [DATA/OTHER_a05 ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from deltaplane.data.schema import TRACKS
from deltaplane.geometry.face_regions import brow_heights


def brow_motion(dataset: Path) -> dict[str, float]:
    """The brows' motion in `dataset`'s tracks, and the share of it the other tokens explain linearly."""
    tracks = np.load(dataset / TRACKS)
    landmarks = tracks["landmarks_aligned"]
    heights = brow_heights(landmarks)
    mean = heights.mean(1)
    distance = np.linalg.norm(landmarks[:, 45] - landmarks[:, 36], axis=1).mean()
    tokens = np.concatenate([tracks["eye_openness"].reshape(len(mean), -1), tracks["angles"],
                             tracks["landmark_feature"].reshape(len(mean), -1), np.ones((len(mean), 1))], axis=1)
    coefficients, *_ = np.linalg.lstsq(tokens, mean, rcond=None)
    residual = mean - tokens @ coefficients
    return {"frames": len(mean), "height_mean": float(mean.mean()), "height_std": float(mean.std()),
            "height_std_px": float(mean.std() * distance), "brows_correlation": float(np.corrcoef(*heights.T)[0, 1]),
            "explained_by_tokens": float(1 - residual.var() / mean.var()),
            "unexplained_std_px": float(residual.std() * distance)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, nargs="+")
    for dataset in parser.parse_args().datasets:
        print(json.dumps({"dataset": dataset.name, **brow_motion(dataset)}))


if __name__ == "__main__":
    main()
