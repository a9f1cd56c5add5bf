"""FID: the Fréchet distance against its closed form, the low-rank shortcut against scipy's sqrtm, and the FID
Inception read back from files in pytorch-fid's key layout (random values, real keys and shapes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from deltaplane.errors import InputError
from deltaplane.metrics.fid import (FIDInceptionV3, feature_statistics, fid_from_features, frechet_distance,
                                    inception_features, load_inception, resize_for_inception)
from deltaplane.metrics.lpips import LPIPS
from weight_checks import assert_rejects_missing_and_corrupt


def _random_inception(seed: int) -> FIDInceptionV3:
    """He-initialised convolutions and random BatchNorm statistics, so features keep their scale through the
    network and a loader that skipped a buffer would be caught."""
    torch.manual_seed(seed)
    model = FIDInceptionV3()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.bias.normal_(0.0, 0.1)
    return model


def _frames(seed: int, count: int) -> list[np.ndarray]:
    """Smooth random RGB frames of a few sizes (the resize makes every one 299²)."""
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(count):
        height, width = (64, 48) if index % 2 else (120, 160)
        smooth = np.cumsum(np.cumsum(rng.normal(size=(height, width, 3)), axis=0), axis=1)
        frames.append(((smooth - smooth.min()) / np.ptp(smooth) * 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def inception() -> FIDInceptionV3:
    return _random_inception(seed=0)


def test_frechet_distance_matches_the_diagonal_closed_form() -> None:
    rng = np.random.default_rng(0)
    mean1, mean2 = rng.normal(size=16), rng.normal(size=16)
    variance1, variance2 = rng.uniform(0.1, 2.0, 16), rng.uniform(0.1, 2.0, 16)
    expected = np.sum((mean1 - mean2) ** 2) + np.sum(variance1 + variance2 - 2 * np.sqrt(variance1 * variance2))
    value = frechet_distance(mean1, np.diag(variance1), mean2, np.diag(variance2))
    assert value == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mean1, np.diag(variance1), mean1, np.diag(variance1)) == pytest.approx(0.0, abs=1e-9)


def test_the_low_rank_shortcut_agrees_with_sqrtm() -> None:
    rng = np.random.default_rng(1)
    first = rng.normal(size=(20, 64))
    second = rng.normal(size=(30, 64)) * 1.5 + 0.3
    reference = frechet_distance(*feature_statistics(first), *feature_statistics(second))
    assert fid_from_features(first, second) == pytest.approx(reference, rel=1e-6)  # fewer samples than dimensions
    assert fid_from_features(first, first) == pytest.approx(0.0, abs=1e-9)
    many = rng.normal(size=(100, 8))  # more samples than dimensions: the sqrtm path itself
    assert fid_from_features(many, many + 1.0) == pytest.approx(8.0, rel=1e-9)  # a pure shift: ‖Δμ‖² = 8
    with pytest.raises(InputError, match="at least 2"):
        fid_from_features(first[:1], second)


def test_state_dict_has_pytorch_fid_key_layout(inception: FIDInceptionV3) -> None:
    state = inception.state_dict()
    for key in ("Conv2d_1a_3x3.conv.weight", "Conv2d_4a_3x3.bn.running_var", "Mixed_5b.branch1x1.conv.weight",
                "Mixed_6a.branch3x3dbl_3.bn.bias", "Mixed_6e.branch7x7dbl_5.conv.weight",
                "Mixed_7a.branch7x7x3_4.conv.weight", "Mixed_7c.branch3x3dbl_3b.bn.running_mean"):
        assert key in state, key
    assert state["Mixed_5b.branch_pool.conv.weight"].shape == (32, 192, 1, 1)
    assert state["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    # torchvision's Inception3 without AuxLogits and fc, as pytorch-fid uses it.
    assert sum(parameter.numel() for parameter in inception.parameters()) == 21_785_568


def test_file_round_trip_in_both_formats(inception: FIDInceptionV3, tmp_path: Path) -> None:
    state = dict(inception.state_dict())
    state.update({"fc.weight": torch.randn(1008, 2048), "fc.bias": torch.zeros(1008)})  # in the file, unused
    torch.save(state, tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    save_file(state, str(tmp_path / "inception.safetensors"))
    frames = _frames(seed=2, count=2)
    expected = inception_features(inception, frames)
    assert expected.shape == (2, 2048) and expected.dtype == np.float32 and np.abs(expected).mean() > 1e-3
    for name in ("pt_inception-2015-12-05-6726825d.pth", "inception.safetensors"):
        np.testing.assert_array_equal(inception_features(load_inception(tmp_path / name), frames), expected)


def test_fid_of_a_set_with_itself_is_zero_and_with_another_set_positive(inception: FIDInceptionV3) -> None:
    first = inception_features(inception, _frames(seed=3, count=3))
    second = inception_features(inception, [np.ascontiguousarray(frame[:, ::-1]) // 2 for frame in
                                            _frames(seed=4, count=3)])
    scale = np.square(first - first.mean(0)).sum()  # the size of FID's terms for these features
    assert abs(fid_from_features(first, first)) < 1e-6 * scale
    assert fid_from_features(first, second) > 0.01 * scale


def test_resize_is_clean_fid_antialiased_bicubic() -> None:
    checkerboard = (np.indices((598, 598)).sum(0) % 2 * 255).astype(np.uint8)
    resized = resize_for_inception(np.repeat(checkerboard[..., None], 3, axis=2))
    assert resized.shape == (299, 299, 3) and resized.dtype == np.float32
    # Halving a one-pixel checkerboard averages it to grey; a filter without antialiasing would keep a pattern.
    assert np.abs(resized[2:-2, 2:-2] - 127.5).max() < 1.0
    constant = resize_for_inception(np.full((50, 70, 3), 200, np.uint8))
    np.testing.assert_allclose(constant, 200.0, atol=1e-3)


def test_missing_wrong_and_corrupt_files(tmp_path: Path) -> None:
    assert_rejects_missing_and_corrupt(load_inception, tmp_path)
    torch.save(LPIPS("alex").state_dict(), tmp_path / "lpips.pth")
    with pytest.raises(InputError, match=r"missing key 'Conv2d_1a_3x3\.conv\.weight'"):
        load_inception(tmp_path / "lpips.pth")
    state = FIDInceptionV3().state_dict()
    state["Mixed_7c.branch_pool.conv.weight"] = torch.zeros(192, 1024, 1, 1)
    torch.save(state, tmp_path / "wrong_shape.pth")
    with pytest.raises(InputError, match="shape"):
        load_inception(tmp_path / "wrong_shape.pth")
