"""Where snapped lip vectors lie against those the renderer is taught with (docs/lip-motion.md "Run 14"), from a
dataset's tracked mouths alone: a `LipVector` (snap 1) fitted on the training split, then the median norm of the
whitened lip vectors and their median distance to the nearest training frame (in snap bandwidths) for the training
frames plus the teacher noise, the tracked test frames, and both snapped; and the mean tracked inner-lip opening
(68-point landmarks 60–67 over the inter-ocular distance, `evaluation.face.mouth_opening`) of each split.

    python scripts/snap_shell.py DATASET [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from deltaplane.data.schema import read_manifest
from deltaplane.evaluation.face import mouth_opening
from deltaplane.fields.lips import LipConfig, LipVector
from deltaplane.geometry.lips import mouth_shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--seed", type=int, default=0, help="seed of the teacher noise")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    splits = read_manifest(args.dataset).splits
    tracks = np.load(args.dataset / "tracks.npz")
    shapes = torch.from_numpy(mouth_shape(tracks["landmarks_aligned"])).float()
    lips = LipVector(LipConfig(snap=1.0), code_dim=1, token_dim=1)
    lips.fit(shapes[splits["train"]])
    bank = lips.coefficients(shapes[splits["train"]])
    taught = lips.taught(bank)
    test = lips.coefficients(shapes[splits["test"]])

    def summary(vectors: torch.Tensor) -> dict[str, float]:
        nearest = torch.cdist(vectors * lips.scale, bank * lips.scale).amin(1) / lips.bandwidth
        return {"median_norm": vectors.norm(dim=1).median().item(), "median_nearest": nearest.median().item()}

    report = {"taught": summary(taught), "test_tracked": summary(test), "test_snapped": summary(lips.snapped(test)),
              "taught_snapped": summary(lips.snapped(taught)),
              **{f"opening/{split}": float(np.mean([mouth_opening(points) for points in
                                                    tracks["landmarks_original"][splits[split]]]))
                 for split in ("train", "test")}}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
