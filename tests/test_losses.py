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


def test_masked_x_variation_sees_stripes_along_x_inside_the_mask_only() -> None:
    """Columns that alternate (a pattern along x) score their step; rows that alternate (along y) and a constant
    score 0; stripes outside the mask count for nothing; each frame counts with its weight, over the batch."""
    columns = torch.arange(16.0) % 2  # 0, 1, 0, 1, … along x (W)
    along_x = columns.expand(2, 3, 8, 16)
    along_y = torch.arange(8.0)[:, None].remainder(2).expand(2, 3, 8, 16)
    mask = torch.zeros(8, 16)
    mask[2:6, 4:12] = 1
    both = torch.ones(2)
    torch.testing.assert_close(losses.masked_x_variation(along_x, mask, both), torch.tensor(1.0))
    assert losses.masked_x_variation(along_y, mask, both) == 0
    assert losses.masked_x_variation(torch.full((2, 3, 8, 16), 4.0), mask, both) == 0
    outside = along_x.clone()
    outside[..., 4:] = 0  # stripes in the columns left of the mask only
    assert losses.masked_x_variation(outside, mask, both) == 0
    weighted = losses.masked_x_variation(along_x, mask, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(weighted, torch.tensor(0.5))
