"""The loss boxes a training batch carries around facial regions (`data.dataset`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deltaplane.data.dataset import EYES_BOX_MARGIN, eyes_boxes, load_clip, make_batch
from deltaplane.data.schema import read_manifest


def test_eyes_box_spans_brows_and_eyes_with_its_margin() -> None:
    landmarks = np.zeros((1, 68, 2), np.float32)
    landmarks[0, :] = [50.0, 120.0]  # jaw, nose and mouth far below
    landmarks[0, 17:27] = np.stack([np.linspace(20, 80, 10), np.full(10, 40.0)], axis=1)  # brows
    landmarks[0, 36:48] = np.stack([np.linspace(25, 75, 12), np.tile([52.0, 58.0], 6)], axis=1)  # eyes
    landmarks[0, 36], landmarks[0, 45] = (25.0, 55.0), (75.0, 55.0)  # outer corners
    margin = EYES_BOX_MARGIN * 50.0  # outer eye corners 36 and 45 lie 50 px apart
    torch.testing.assert_close(torch.from_numpy(eyes_boxes(landmarks)),
                               torch.tensor([[20 - margin, 40 - margin, 80 + margin, 58 + margin]]))


def test_a_batch_eyes_box_holds_the_brows_and_eyes_and_not_the_mouth(synthetic_dataset: Path) -> None:
    """On the synthetic clip's tracked landmarks, at the batch's output resolution."""
    manifest = read_manifest(synthetic_dataset)
    _, clip = load_clip(synthetic_dataset, "train", size=128)
    positions = torch.tensor([0, 3])
    batch = make_batch(clip, positions, 64)
    landmarks = np.load(synthetic_dataset / "tracks.npz")["landmarks_aligned"][clip.indices[positions].numpy()]
    pixels = np.floor(landmarks * (128 / manifest.image_size)).astype(int)  # pixel whose footprint holds each point
    for frame in range(2):
        inside = batch.eyes_box[frame, 0, pixels[frame, :, 1], pixels[frame, :, 0]].numpy()
        assert inside[17:27].all() and inside[36:48].all()
        assert not inside[48:68].any() and not inside[8]  # mouth and chin
    assert 0.03 < batch.eyes_box.float().mean() < 0.15, "about a fourteenth of the frame"
