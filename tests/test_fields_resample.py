"""×2 resampling (fields/resample.py): the upfirdn filters by their definition, the bilinear upsampling's compiled
form equal to `F.interpolate`, and a compiled super-resolution's gradients equal to eager's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deltaplane.fields.resample import _upsample2x_axis, bilinear_upsample2x, downsample2x, upsample2x
from deltaplane.fields.superres import SuperResolution, SuperResolutionConfig


def _upfirdn_reference(x: torch.Tensor, up: int, down: int, pad: tuple[int, int], gain: float) -> torch.Tensor:
    """upfirdn2d by its definition: zero insertion, padding, convolution with the flipped filter, decimation."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=x.dtype)
    kernel = (torch.outer(taps, taps) / taps.sum() ** 2 * gain).flip(0, 1)
    batch, channels, height, width = x.shape
    upsampled = torch.zeros(batch, channels, height * up, width * up, dtype=x.dtype)
    upsampled[:, :, ::up, ::up] = x
    padded = F.pad(upsampled, (pad[0], pad[1], pad[0], pad[1]))
    filtered = F.conv2d(padded, kernel.expand(channels, 1, 4, 4), groups=channels)
    return filtered[:, :, ::down, ::down]


def test_resampling_matches_upfirdn_reference() -> None:
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(downsample2x(x), _upfirdn_reference(x, 1, 2, (1, 1), 1.0))
    torch.testing.assert_close(upsample2x(x), _upfirdn_reference(x, 2, 1, (2, 1), 4.0))
    constant = torch.ones(1, 1, 8, 8)
    assert torch.allclose(upsample2x(constant)[..., 2:-2, 2:-2], constant.new_ones(1, 1, 12, 12))


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 5, 3, 7), (1, 1, 1, 4)])
def test_compiled_bilinear_form_equals_interpolate(shape: tuple[int, ...]) -> None:
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    slices = _upsample2x_axis(_upsample2x_axis(x, -2, repeat_edge=True), -1, repeat_edge=True)
    interpolated = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    torch.testing.assert_close(slices, interpolated)
    weights = torch.randn_like(slices)
    grads = [torch.autograd.grad((y * weights).sum(), x)[0] for y in (slices, interpolated)]
    torch.testing.assert_close(*grads)
    torch.testing.assert_close(bilinear_upsample2x(x), interpolated)  # eager: interpolate itself


def test_compiled_superres_gradients_match_eager() -> None:
    """The model feeds the super-resolution a channels-last feature image and its first 3 channels; compiled with
    interpolate inside, inductor's CPU code gave the first block's ToRGB no gradient (scripts/
    inductor_upsample_case.py)."""
    torch.manual_seed(0)
    superres = SuperResolution(SuperResolutionConfig(input_resolution=16, block0_channels=8, block1_channels=8))
    with torch.no_grad():
        for parameter in superres.parameters():  # the zero-initialised ToRGB layers take part
            parameter.add_(0.05 * torch.randn_like(parameter))
    rays = torch.randn(2, 16 * 16, 32)  # [B, R, C], as the volume renderer gives features
    target = torch.randn(2, 3, 64, 64)

    def gradients(forward) -> dict[str, torch.Tensor]:  # noqa: ANN001
        features = rays.clone().requires_grad_().permute(0, 2, 1).reshape(2, 32, 16, 16)
        superres.zero_grad()
        (forward(features[:, :3], features) - target).abs().mean().backward()
        return {name: p.grad.clone() for name, p in superres.named_parameters()}

    eager = gradients(superres.forward)
    compiled = gradients(torch.compile(superres.forward, backend="inductor"))
    torch._dynamo.reset()
    for name, grad in eager.items():
        torch.testing.assert_close(compiled[name], grad, rtol=1e-4, atol=1e-6, msg=name)
