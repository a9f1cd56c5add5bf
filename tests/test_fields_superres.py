"""Super-resolution: output shape, identity-like init (bilinear upsample of the raw RGB), resized inputs, training,
and the one-block ×2 shape for 256² renderings."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from deltaplane.fields.superres import TINY_SUPERRES, SuperResolution, SuperResolutionConfig
from deltaplane.models.triplane_talker import TriplaneTalker, TriplaneTalkerConfig


def _upsample2(image: torch.Tensor) -> torch.Tensor:
    return F.interpolate(image, scale_factor=2.0, mode="bilinear")


def _inputs(resolution: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth random feature image in [-1, 1] and its first 3 channels."""
    coarse = torch.rand(batch, 32, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    features = F.interpolate(coarse, size=(resolution, resolution), mode="bilinear")
    return features[:, :3], features


def test_output_shape_and_init_is_upsampled_raw_rgb() -> None:
    torch.manual_seed(0)
    model = SuperResolution(TINY_SUPERRES)
    rgb, features = _inputs(128, batch=1)
    with torch.no_grad():
        output = model(rgb, features)
    assert output.shape == (1, 3, 512, 512)
    torch.testing.assert_close(output, _upsample2(_upsample2(rgb)))
    once = F.interpolate(rgb, scale_factor=4.0, mode="bilinear")
    torch.testing.assert_close(output[..., 4:-4, 4:-4], once[..., 4:-4, 4:-4], atol=0.02, rtol=0)  # ≈ one ×4 step


def test_any_input_size_is_upsampled_by_the_scale_and_a_crop_gives_the_crop() -> None:
    """The net is convolutional (a training window's feature image is smaller than a whole frame's): a crop of the
    input gives the same crop of the output, away from the border its convolutions see past."""
    torch.manual_seed(0)
    config = SuperResolutionConfig(input_resolution=32, block0_channels=8, block1_channels=4)
    model = SuperResolution(config)
    for block in (model.block0, model.block1):  # trained ToRGBs: not just the upsampled raw RGB
        torch.nn.init.normal_(block.torgb.weight, std=0.1)
    rgb, features = _inputs(32, batch=1)
    with torch.no_grad():
        whole = model(rgb, features)
        window = model(rgb[..., 8:24, 4:20], features[..., 8:24, 4:20])
    assert whole.shape == (1, 3, 128, 128) and window.shape == (1, 3, 64, 64)
    torch.testing.assert_close(window[..., 12:-12, 12:-12], whole[..., 32 + 12:96 - 12, 16 + 12:80 - 12])


def test_gradients_reach_every_parameter_and_channels_last_matches() -> None:
    torch.manual_seed(0)
    config = SuperResolutionConfig(input_resolution=16, block0_channels=8, block1_channels=4)
    model = SuperResolution(config)
    rgb, features = _inputs(16)
    target = torch.rand(2, 3, 64, 64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):  # after one step the zero ToRGB convs have moved, so the second step reaches the convs
        optimizer.zero_grad()
        F.mse_loss(model(rgb, features), target).backward()
        optimizer.step()
    assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in model.parameters())
    with torch.no_grad():
        expected = model(rgb, features)
        channels_last = model.to(memory_format=torch.channels_last)(
            rgb.contiguous(memory_format=torch.channels_last), features.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(channels_last, expected, atol=1e-5, rtol=1e-5)


def test_full_config_matches_eg3d_widths() -> None:
    model = SuperResolution()
    assert model.block0.conv0.weight.shape == (256, 32, 3, 3) and model.block1.conv1.weight.shape == (128, 128, 3, 3)
    assert model.block0.torgb.weight.shape == (3, 256, 1, 1) and model.block1.torgb.weight.shape == (3, 128, 1, 1)


def test_one_upsampling_doubles_with_the_last_block_alone() -> None:
    torch.manual_seed(0)
    config = SuperResolutionConfig(input_resolution=32, upsamplings=1, block1_channels=4)
    model = SuperResolution(config)
    assert model.block0 is None and model.block1.conv0.weight.shape == (4, 32, 3, 3)
    rgb, features = _inputs(32, batch=1)
    with torch.no_grad():
        output = model(rgb, features)
    assert output.shape == (1, 3, 64, 64)
    torch.testing.assert_close(output, _upsample2(rgb))  # zero ToRGB at init: the raw RGB upsampled once
    with pytest.raises(ValueError, match="upsamplings"):
        SuperResolutionConfig(upsamplings=3)


def test_the_model_output_follows_the_superres_scale() -> None:
    config = TriplaneTalkerConfig()
    assert config.output_resolution == 512
    sharp = dataclasses.replace(config, render_resolution=256,
                                superres=dataclasses.replace(config.superres, input_resolution=256, upsamplings=1))
    assert sharp.output_resolution == 512
    assert not any(name.startswith("superres.block0") for name in TriplaneTalker(sharp).state_dict())


def test_input_stack_starts_as_its_stem_and_learns_context() -> None:
    """Residual blocks at the input resolution: silent at init (the output is still the raw RGB upsampled), every
    parameter trained, and each block widens what an output pixel sees by 2 rendered pixels each side."""
    torch.manual_seed(0)
    config = SuperResolutionConfig(input_resolution=16, upsamplings=1, block1_channels=4, input_blocks=2,
                                   input_channels=6)
    model = SuperResolution(config)
    assert model.stack.stem.weight.shape == (6, 32, 3, 3) and model.block1.conv0.weight.shape == (4, 6, 3, 3)
    rgb, features = _inputs(16)
    with torch.no_grad():
        torch.testing.assert_close(model(rgb, features), _upsample2(rgb))
        stem_only = F.leaky_relu(model.stack.stem(features), 0.2)
        torch.testing.assert_close(model.stack(features), stem_only)  # zero second convs: identity blocks
    target = torch.rand(2, 3, 32, 32)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):  # ToRGB first, then the convs behind it, then the zero-initialised second convs' inputs
        optimizer.zero_grad()
        F.mse_loss(model(rgb, features), target).backward()
        optimizer.step()
    assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in model.parameters())

    # each 3×3 conv at the input resolution widens what an output pixel sees by one rendered pixel each side, i.e.
    # by 4 output pixels in all: the stem's one and each block's two, with every weight non-zero
    def reach(superres: SuperResolution) -> int:
        with torch.no_grad():
            for parameter in superres.parameters():
                parameter.add_(0.1)
            poked = features.clone()
            poked[:, :, 8, 8] += 1.0
            changed = (superres(rgb, poked) - superres(rgb, features)).abs().amax(dim=(0, 1)) > 1e-7
        rows = changed.any(dim=1).nonzero().flatten()
        return int(rows.max() - rows.min()) + 1

    plain = SuperResolution(dataclasses.replace(config, input_blocks=0))
    assert reach(model) == reach(plain) + 4 * (1 + 2 * config.input_blocks) == 8 + 20


def test_input_stack_config_is_checked_and_checkpoints_without_it_load() -> None:
    with pytest.raises(ValueError, match="input_blocks"):
        SuperResolutionConfig(input_blocks=-1)
    plain = SuperResolution(SuperResolutionConfig(input_resolution=16, upsamplings=1, block1_channels=4))
    assert not any(name.startswith("stack") for name in plain.state_dict())
