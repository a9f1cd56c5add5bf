"""ArcFace: IResNet backbones read back from files in arcface_torch's key layout (random values, real keys and
shapes), unit embeddings, and insightface's 5-point alignment onto `arcface_dst`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from deltaplane.errors import InputError
from deltaplane.metrics.arcface import (ARCFACE_TEMPLATE, IResNet, align_face, alignment_matrix, arcface_embeddings,
                                        five_points, load_arcface)
from weight_checks import assert_rejects_missing_and_corrupt


@pytest.fixture(scope="module")
def iresnet18() -> IResNet:
    """He-initialised convolutions and random BatchNorm statistics (a loader skipping a buffer would show)."""
    torch.manual_seed(0)
    model = IResNet(18)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.bias.normal_(0.0, 0.1)
    return model


def _crops(seed: int, count: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 112, 112, 3), dtype=np.uint8)


def test_key_layout_and_sizes_of_the_four_depths(iresnet18: IResNet) -> None:
    state = iresnet18.state_dict()
    for key in ("conv1.weight", "bn1.running_mean", "prelu.weight", "layer1.0.bn1.weight", "layer1.0.conv1.weight",
                "layer1.0.bn2.bias", "layer1.0.prelu.weight", "layer1.0.conv2.weight", "layer1.0.bn3.running_var",
                "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_mean", "layer4.1.conv2.weight",
                "bn2.weight", "fc.weight", "fc.bias", "features.running_var"):
        assert key in state, key
    assert "layer1.1.downsample.0.weight" not in state and state["fc.weight"].shape == (512, 512 * 7 * 7)
    # arcface_torch's published sizes: r18 24.0 M, r50 43.6 M, r100 65.2 M parameters.
    assert sum(parameter.numel() for parameter in iresnet18.parameters()) == 24_025_600
    assert "layer3.29.conv1.weight" in IResNet(100).state_dict()
    assert sum(parameter.numel() for parameter in IResNet(50).parameters()) == 43_590_848


def test_file_round_trip_reads_the_depth(iresnet18: IResNet, tmp_path: Path) -> None:
    torch.save({"module." + name: value for name, value in iresnet18.state_dict().items()}, tmp_path / "dp.pth")
    torch.save(iresnet18.state_dict(), tmp_path / "backbone.pth")
    save_file(iresnet18.state_dict(), str(tmp_path / "backbone.safetensors"))
    crops = _crops(seed=1, count=2)
    expected = arcface_embeddings(iresnet18, crops)
    assert expected.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(expected, axis=1), 1.0, rtol=1e-5)
    for name in ("backbone.pth", "backbone.safetensors", "dp.pth"):
        loaded = load_arcface(tmp_path / name)
        assert loaded.depth == 18
        np.testing.assert_array_equal(arcface_embeddings(loaded, crops), expected)


def test_the_same_crop_has_cosine_one_and_another_less(iresnet18: IResNet) -> None:
    crop = _crops(seed=2, count=1)
    embeddings = arcface_embeddings(iresnet18, np.concatenate([crop, crop, crop[:, :, ::-1]]))
    assert float(embeddings[0] @ embeddings[1]) == pytest.approx(1.0, abs=1e-5)
    assert float(embeddings[0] @ embeddings[2]) < 0.999


def test_missing_wrong_and_corrupt_files(iresnet18: IResNet, tmp_path: Path) -> None:
    assert_rejects_missing_and_corrupt(load_arcface, tmp_path)
    state = dict(iresnet18.state_dict())
    state["layer1.2.conv1.weight"] = state["layer1.1.conv1.weight"]  # three blocks in the first stage: no such net
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(InputError, match=r"\(3, 2, 2, 2\) blocks per stage"):
        load_arcface(tmp_path / "odd.pth")
    del state["layer1.2.conv1.weight"], state["features.running_mean"]
    torch.save(state, tmp_path / "incomplete.pth")
    with pytest.raises(InputError, match="missing key 'features.running_mean'"):
        load_arcface(tmp_path / "incomplete.pth")


def _similarity(scale: float, degrees: float, shift: tuple[float, float]) -> np.ndarray:
    angle = math.radians(degrees)
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return np.concatenate([rotation, np.array(shift)[:, None]], axis=1)


def test_five_point_alignment_maps_the_points_onto_arcface_dst() -> None:
    # Landmarks (pixel centres at +0.5) whose 5 points are a known similarity of the template in OpenCV coordinates.
    template_to_frame = _similarity(1.6, 12.0, (40.0, 30.0))
    points = ARCFACE_TEMPLATE @ template_to_frame[:, :2].T + template_to_frame[:, 2] + 0.5  # [5, 2]
    landmarks = np.random.default_rng(3).uniform(0, 250, (68, 2)).astype(np.float32)
    landmarks[36:42], landmarks[42:48] = points[0], points[1]
    landmarks[30], landmarks[48], landmarks[54] = points[2], points[3], points[4]
    np.testing.assert_allclose(five_points(landmarks), points, atol=1e-4)
    matrix = alignment_matrix(five_points(landmarks) - 0.5)
    np.testing.assert_allclose((five_points(landmarks) - 0.5) @ matrix[:, :2].T + matrix[:, 2], ARCFACE_TEMPLATE,
                               atol=1e-3)
    # The crop samples the frame where the similarity says: a frame whose red/green encode the column/row.
    rows, columns = np.indices((256, 256))
    frame = np.stack([columns, rows, np.zeros_like(rows)], axis=2).astype(np.uint8)
    crop = align_face(frame, landmarks)
    crop_rows, crop_columns = np.indices((112, 112))
    source = np.stack([crop_columns, crop_rows], axis=2) @ template_to_frame[:, :2].T + template_to_frame[:, 2]
    inside = (source > 1).all(2) & (source < 254).all(2)
    assert inside.mean() > 0.8
    # Rounding to uint8 is within 0.5; missing the half-pixel shift between conventions would add another 0.5.
    np.testing.assert_allclose(crop[inside][:, :2], source[inside], atol=0.51)
