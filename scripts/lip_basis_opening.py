"""How much of the tracked mouth opening survives the lip vector, with no renderer: the test split's tracked mouth
shapes through the basis fitted on the training frames (`LipVector.fit`), with and without the snap among the
training mouths and the teacher noise. Prints the opening's std and mean ratios and its correlation against the
tracked opening (docs/lip-motion.md "What remains").

    python scripts/lip_basis_opening.py DATASET [DATASET ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from deltaplane.data.dataset import load_clip
from deltaplane.fields.lips import LipConfig, LipVector
from deltaplane.geometry.lips import shape_opening as opening


def compare(values: torch.Tensor, tracked: torch.Tensor) -> str:
    correlation = torch.corrcoef(torch.stack([values, tracked]))[0, 1].item()
    return (f"std {(values.std() / tracked.std()).item():.2f} mean {(values.mean() / tracked.mean()).item():.2f} "
            f"corr {correlation:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", type=Path, nargs="+")
    args = parser.parse_args()
    torch.manual_seed(0)
    for dataset in args.datasets:
        _, train = load_clip(dataset, "train", size=128)
        _, test = load_clip(dataset, "test", size=128)
        tracked = opening(test.mouth_shapes.float())
        for dim in (8, 12, 16):
            for noise in (0.0, LipConfig().teacher_noise):
                lips = LipVector(LipConfig(dim=dim, snap=1.0), code_dim=16, token_dim=64)
                lips.fit(train.mouth_shapes)
                coefficients = lips.coefficients(test.mouth_shapes)
                coefficients = coefficients + noise * torch.randn_like(coefficients)
                basis = compare(opening(lips.shapes(coefficients)), tracked)
                snapped = compare(opening(lips.shapes(lips.snapped(coefficients))), tracked)
                print(f"{dataset.name} dim {dim} noise {noise}: basis {basis} | snapped {snapped}")


if __name__ == "__main__":
    main()
