"""Loss maths that the other test modules do not already pin (the Laplacian-pyramid detail term)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deltaplane import losses


def test_laplacian_pyramid_reconstructs_the_image() -> None:
    images = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    pyramid = losses.laplacian_pyramid(images, 3)
    assert [level.shape[-2:] for level in pyramid] == [(32, 48), (16, 24), (8, 12), (4, 6)]
    rebuilt = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        rebuilt = band + F.interpolate(rebuilt, scale_factor=2, mode="nearest")
    torch.testing.assert_close(rebuilt, images)


def test_blur_costs_more_in_the_detail_term_than_in_plain_l1() -> None:
    """A blurred image and one shifted in brightness, at the same plain L1 from the target: the detail term
    charges the blur and not the brightness (a flat offset lives in the low-pass remainder only)."""
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1
    blurred = F.avg_pool2d(F.pad(target, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    offset = target + losses.l1(blurred, target)
    torch.testing.assert_close(losses.l1(offset, target), losses.l1(blurred, target))
    assert losses.laplacian_l1(offset, target) < 1e-5 < 0.5 * losses.laplacian_l1(blurred, target)
    assert losses.laplacian_l1(target, target) == 0
