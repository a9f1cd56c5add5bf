"""LPIPS from weight files in the official formats (random values, real key names and shapes), read back here."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from deltaplane.errors import InputError, MissingDependencyError
from deltaplane.metrics.lpips import LPIPS, load_lpips, read_weight_file


def _random_lpips(net: str, seed: int = 0) -> LPIPS:
    torch.manual_seed(seed)
    model = LPIPS(net)  # backbone convs get torch's random init
    for k in range(5):  # the released linear heads are non-negative
        head = getattr(model, f"lin{k}").model[1]
        head.weight.copy_(torch.rand_like(head.weight) * 0.1)
    return model


def _write_official_pair(model: LPIPS, folder: Path) -> tuple[Path, Path]:
    """torchvision backbone (`features.{i}.*` + a classifier entry) and lpips heads (`lin{k}.model.1.weight`)."""
    net = model.net_name
    backbone_state = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("net.slice"):
            _, _, index, kind = name.split(".")
            backbone_state[f"features.{index}.{kind}"] = tensor.clone()
    backbone_state["classifier.6.bias"] = torch.zeros(1000)
    heads_state = {name: tensor.clone() for name, tensor in model.state_dict().items() if name.startswith("lin")}
    backbone = folder / ("alexnet-owt-7be5be79.pth" if net == "alex" else "vgg16-397923af.pth")
    heads = folder / f"{net}.pth"
    torch.save(backbone_state, backbone)
    torch.save(heads_state, heads)
    return backbone, heads


@pytest.fixture(scope="module")
def alex() -> LPIPS:
    return _random_lpips("alex")


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    first = torch.rand(2, 3, 64, 64, generator=generator) * 2 - 1
    second = torch.rand(2, 3, 64, 64, generator=generator) * 2 - 1
    return first, second


def test_official_backbone_and_heads_files_round_trip(alex, images, tmp_path):
    backbone, heads = _write_official_pair(alex, tmp_path)
    expected = alex(*images)
    for source in (tmp_path, [backbone, heads], [heads, backbone]):
        loaded = load_lpips(source, net="alex")
        torch.testing.assert_close(loaded(*images), expected, rtol=0, atol=0)
    assert expected.shape == (2,)
    assert torch.all(expected > 0)


def test_full_model_files_round_trip(alex, images, tmp_path):
    torch.save(alex.state_dict(), tmp_path / "lpips_alex.pth")
    save_file(alex.state_dict(), str(tmp_path / "lpips_alex.safetensors"))
    without_constants = {k: v for k, v in alex.state_dict().items() if not k.startswith("scaling_layer")}
    torch.save(without_constants, tmp_path / "no_scaling.pth")
    for name in ("lpips_alex.pth", "lpips_alex.safetensors", "no_scaling.pth"):
        torch.testing.assert_close(load_lpips(tmp_path / name)(*images), alex(*images), rtol=0, atol=0)


def test_vgg_round_trip(images, tmp_path):
    vgg = _random_lpips("vgg", seed=2)
    _write_official_pair(vgg, tmp_path)
    assert "net.slice5.24.weight" in vgg.state_dict()  # torchvision index kept inside the lpips slice
    torch.testing.assert_close(load_lpips(tmp_path, net="vgg")(*images), vgg(*images), rtol=0, atol=0)


def test_identical_images_give_zero_and_noise_increases_distance(alex, images):
    clean = images[0]
    assert torch.equal(alex(clean, clean), torch.zeros(2))
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(3))
    distances = [alex((clean + scale * noise).clamp(-1, 1), clean) for scale in (0.02, 0.1, 0.4)]
    assert torch.all(distances[0] < distances[1]) and torch.all(distances[1] < distances[2])


def test_frozen_but_differentiable_in_its_inputs(alex, images):
    prediction = images[0].clone().requires_grad_(True)
    alex(prediction, images[1]).sum().backward()
    assert prediction.grad is not None and torch.isfinite(prediction.grad).all() and prediction.grad.abs().sum() > 0
    assert not any(parameter.requires_grad for parameter in alex.parameters())
    torch.nn.Sequential(alex).train()  # a parent switching to training mode leaves the metric in eval
    assert not alex.training


def test_missing_files_raise_missing_dependency(alex, tmp_path):
    with pytest.raises(MissingDependencyError, match="not found"):
        load_lpips(tmp_path / "nowhere.pth")
    _, heads = _write_official_pair(alex, tmp_path)
    (tmp_path / "alexnet-owt-7be5be79.pth").unlink()
    with pytest.raises(MissingDependencyError, match="alexnet"):
        load_lpips(tmp_path)
    heads.unlink()
    with pytest.raises(MissingDependencyError, match=r"alex\.pth"):
        load_lpips(tmp_path)


class _NotATensor:
    pass


def test_corrupt_or_unsafe_files_raise_input_error(tmp_path):
    corrupt = tmp_path / "alex.pth"
    corrupt.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(InputError, match="cannot read"):
        load_lpips(corrupt)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"lin0.model.1.weight": _NotATensor()}, unsafe)
    with pytest.raises(InputError, match="objects other than tensors") as refused:
        load_lpips(unsafe)
    assert "weights_only" not in str(refused.value)  # torch's hint to load it unsafely is never passed on
    integer_keys = tmp_path / "integer_keys.pth"
    torch.save({0: torch.zeros(2)}, integer_keys)
    with pytest.raises(InputError, match="int key"):
        load_lpips(integer_keys)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="cannot read"):
        load_lpips(broken)


def test_wrong_keys_name_the_missing_key(alex, tmp_path):
    backbone, heads = _write_official_pair(alex, tmp_path)
    with pytest.raises(InputError, match=r"missing key 'net\.slice1\.0\.weight'.*backbone"):
        load_lpips(heads)
    renamed = {name.replace("lin", "linear"): tensor for name, tensor in torch.load(heads).items()}
    torch.save(renamed, heads)
    with pytest.raises(InputError, match=r"missing key 'lin0\.model\.1\.weight'.*heads"):
        load_lpips([backbone, heads])
    with pytest.raises(InputError, match="expected"):
        load_lpips([backbone, heads, heads])


def test_backbone_of_the_other_network_is_rejected_by_shape(alex, tmp_path):
    backbone, heads = _write_official_pair(alex, tmp_path)
    with pytest.raises(InputError, match="shape"):
        load_lpips([backbone, heads], net="vgg")


def test_a_weight_file_that_would_unpack_to_far_more_than_its_size_is_refused(tmp_path):
    """torch.save stores tensors uncompressed; the same zip deflated is a decompression bomb (issue 12)."""
    plain = tmp_path / "plain.pth"
    torch.save({"weight": torch.zeros(6 << 20)}, plain)  # 24 MB of zeros
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as packed:
        for info in source.infolist():
            packed.writestr(info.filename, source.read(info.filename))
    assert read_weight_file(plain, "LPIPS")["weight"].numel() == 6 << 20
    with pytest.raises(InputError, match="would unpack to 25 MB"):
        read_weight_file(bomb, "LPIPS")
