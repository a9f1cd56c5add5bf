"""Tri-plane sampling: plane axes (x,y), (x,z), (z,y) (NVlabs/eg3d#67), agreement with the gather reference on
values and gradients, the OSG decoder / TriplaneField, and the field emptied outside the box."""

from __future__ import annotations

import pytest
import torch

import torch.nn.functional as F

from deltaplane.fields.triplane import (OUTSIDE_DENSITY, Confinement, OSGDecoder, OSGDecoderConfig, TriplaneField,
                                        sample_triplane, sample_triplane_grid, sample_triplane_reference)


def _coordinate_planes(height: int, width: int) -> torch.Tensor:
    """[1, 3, 6, H, W]: plane k holds its own texel-centre (u, v) in channels 2k, 2k + 1 and zeros elsewhere."""
    u = (2 * torch.arange(width) + 1) / width - 1  # align_corners=False texel centres
    v = (2 * torch.arange(height) + 1) / height - 1
    planes = torch.zeros(1, 3, 6, height, width)
    for plane_index in range(3):
        planes[0, plane_index, 2 * plane_index] = u[None, :].expand(height, width)
        planes[0, plane_index, 2 * plane_index + 1] = v[:, None].expand(height, width)
    return planes


def test_plane_axes_follow_the_fixed_eg3d_convention() -> None:
    planes = _coordinate_planes(height=6, width=10)  # non-square: catches a swapped height/width axis
    on_x_axis = torch.tensor([[[0.3, 0.0, 0.0]]])
    uv = 3 * sample_triplane(planes, on_x_axis)[0, 0]  # undo the mean over planes
    # +x lands on the width axis of XY and XZ and on the origin of ZY (the original EG3D sent it to ZX's height).
    torch.testing.assert_close(uv, torch.tensor([0.6, 0.0, 0.6, 0.0, 0.0, 0.0]), atol=1e-6, rtol=0)

    x, y, z = 0.21, -0.17, 0.33  # inside the texel-centre hull, where bilinear reproduces linear functions
    uv = 3 * sample_triplane(planes, torch.tensor([[[x, y, z]]]), box_warp=1.0)[0, 0]
    torch.testing.assert_close(uv, 2 * torch.tensor([x, y, x, z, z, y]), atol=1e-6, rtol=0)
    uv = 3 * sample_triplane(planes, torch.tensor([[[x, y, z]]]), box_warp=2.0)[0, 0]
    torch.testing.assert_close(uv, torch.tensor([x, y, x, z, z, y]), atol=1e-6, rtol=0)


def test_sample_triplane_matches_reference_values_and_gradients() -> None:
    generator = torch.Generator().manual_seed(0)
    planes = torch.randn(2, 3, 4, 5, 7, dtype=torch.float64, generator=generator, requires_grad=True)
    points = (1.3 * torch.rand(2, 50, 3, dtype=torch.float64, generator=generator) - 0.65).requires_grad_()
    fast = sample_triplane(planes, points)
    slow = sample_triplane_reference(planes, points)
    torch.testing.assert_close(fast, slow)
    weights = torch.randn_like(fast)
    fast_grads = torch.autograd.grad((fast * weights).sum(), (planes, points))
    slow_grads = torch.autograd.grad((slow * weights).sum(), (planes, points))
    for fast_grad, slow_grad in zip(fast_grads, slow_grads):
        torch.testing.assert_close(fast_grad, slow_grad)


def test_points_outside_the_box_sample_zero() -> None:
    planes = torch.ones(1, 3, 2, 4, 4)
    features = sample_triplane(planes, torch.tensor([[[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]]]))
    torch.testing.assert_close(features, torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]))


def test_decoder_outputs_and_field_composition() -> None:
    torch.manual_seed(0)
    config = OSGDecoderConfig(feature_channels=8, hidden_channels=16, output_channels=5)
    decoder = OSGDecoder(config)
    assert [name for name, _ in decoder.named_parameters()] == ["net.0.weight", "net.0.bias", "net.2.weight",
                                                                "net.2.bias"]  # the EG3D state-dict names
    features, density = decoder(100 * torch.randn(2, 9, 8))
    assert features.shape == (2, 9, 5) and density.shape == (2, 9, 1)
    assert features.min() >= -0.001 and features.max() <= 1.001 and features.min() < 0.0 < 1.0 < features.max()

    field = TriplaneField(config, box_warp=1.0)
    planes, points = torch.randn(2, 3, 8, 6, 6), torch.rand(2, 9, 3) - 0.5
    features, density = field(planes, points)
    expected_features, expected_density = field.decoder(sample_triplane(planes, points))
    torch.testing.assert_close(features, expected_features)
    torch.testing.assert_close(density, expected_density)
    (features.sum() + density.sum()).backward()
    assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in field.parameters())


def test_bfloat16_planes_sample_in_float32() -> None:
    planes = torch.randn(1, 3, 4, 8, 8)
    points = torch.rand(1, 10, 3) - 0.5
    sampled = sample_triplane(planes.bfloat16(), points)
    assert sampled.dtype == torch.float32
    torch.testing.assert_close(sampled, sample_triplane(planes.bfloat16().float(), points))


def test_box_weights_sample_to_one_inside_the_box_and_zero_far_outside() -> None:
    """The plane-axis convention of `box_weights` is the sampler's: planes of box weights sample to 1 at points
    inside the world box on all three planes, and to 0 at points outside it on every axis."""
    from deltaplane.fields.triplane import box_weights

    box = (-0.1, 0.1, -0.2, -0.02, 0.0, 0.35)
    weights = box_weights(box, 64, 1.0, 0.02)
    assert weights.shape == (3, 1, 64, 64) and weights.min() >= 0 and weights.max() <= 1
    planes = weights.expand(3, 2, 64, 64)[None]  # [1, 3, C=2, R, R]
    inside = torch.tensor([[[0.0, -0.1, 0.15], [0.05, -0.05, 0.3], [-0.08, -0.18, 0.02]]])
    torch.testing.assert_close(sample_triplane(planes, inside), torch.ones(1, 3, 2))
    for axis, value in ((0, 0.3), (1, 0.2), (2, -0.2)):  # leave the box along one axis: that axis' planes drop
        outside = inside.clone()
        outside[..., axis] = value
        assert (sample_triplane(planes, outside) < 0.34).all()
    far = torch.tensor([[[0.4, 0.3, -0.4]]])
    torch.testing.assert_close(sample_triplane(planes, far), torch.zeros(1, 1, 2))


def test_support_rectangles_hold_every_non_zero_weight_and_no_empty_row_or_column() -> None:
    from deltaplane.fields.triplane import box_weights, support_rectangles

    weights = box_weights((-0.1, 0.1, -0.2, -0.02, 0.0, 0.35), 64, 1.0, 0.02)
    rectangles = support_rectangles(weights)
    for plane, (r0, r1, c0, c1) in enumerate(rectangles):
        inside = weights[plane, 0, r0:r1, c0:c1]
        assert inside.abs().sum() == weights[plane].abs().sum()  # nothing outside
        assert (inside != 0).any(1).all() and (inside != 0).any(0).all()  # tight
    assert rectangles[0][2:] == rectangles[1][2:]  # x is the columns of planes 0 (x, y) and 1 (x, z)
    assert support_rectangles(torch.zeros(3, 1, 8, 8)) == [(0, 8, 0, 8)] * 3


def test_the_field_emptied_outside_the_box_keeps_the_inside_and_renders_nothing_outside() -> None:
    """Past the box along x a point still carries plane 2's features, so EG3D's field has matter there (the
    extrusion side views see); with `empty_outside` the inside is unchanged, the outside's density activates to
    exactly 0 in float32 and bfloat16, and no gradient comes from it."""
    generator = torch.Generator().manual_seed(0)
    planes = torch.randn(1, 3, 32, 16, 16, generator=generator, requires_grad=True)
    points = torch.tensor([[[0.1, -0.2, 0.3], [0.49, 0.0, -0.49], [0.7, 0.1, 0.2], [0.0, -0.6, 0.0],
                            [0.1, 0.1, 0.55]]])
    torch.manual_seed(0)
    plain = TriplaneField(box_warp=1.0)
    emptied = TriplaneField(box_warp=1.0, empty_outside=True)
    emptied.load_state_dict(plain.state_dict())
    features, density = plain(planes, points)
    features_emptied, density_emptied = emptied(planes, points)
    torch.testing.assert_close(features_emptied, features)
    torch.testing.assert_close(density_emptied[:, :2], density[:, :2])
    assert sample_triplane(planes, points)[0, 2].abs().sum() > 0  # the extrusion that is removed
    assert (density_emptied[:, 2:] == OUTSIDE_DENSITY).all()
    for dtype in (torch.float32, torch.bfloat16):
        assert (F.softplus(density_emptied[:, 2:].to(dtype) - 1.0) == 0).all()
    gradient, = torch.autograd.grad(density_emptied[:, 2:].sum(), planes, allow_unused=True)
    assert gradient is None or gradient.abs().sum() == 0


def test_a_subset_of_planes_samples_as_the_three_with_the_others_zero() -> None:
    """`sample_triplane(..., plane_ids)`: the planes named, each at its own axes, and the left-out ones counting as
    zero in the mean over three (what `TriplaneField.sample` relies on to read confined sets on some planes only)."""
    generator = torch.Generator().manual_seed(0)
    planes = torch.randn(2, 3, 4, 6, 9, generator=generator)
    points = (torch.rand(2, 50, 3, generator=generator) - 0.5) * 1.2
    for plane_ids in ((0,), (2, 1), (0, 1, 2)):
        zeroed = torch.zeros_like(planes)
        zeroed[:, list(plane_ids)] = planes[:, list(plane_ids)]
        torch.testing.assert_close(sample_triplane(planes[:, list(plane_ids)], points, plane_ids=plane_ids),
                                   sample_triplane(zeroed, points))
    with pytest.raises(ValueError, match="plane ids"):
        sample_triplane(planes, points, plane_ids=(0,))


def test_blur_along_x_removes_x_stripes_inside_the_mask_and_keeps_the_rest() -> None:
    """`blur_along_x`: on the chosen plane, stripes along x (its columns) fade where the mask is 1 and stay where
    it is 0 (one mask for all frames, or one per frame); stripes along y (rows), constant rows and the other planes
    are untouched."""
    from deltaplane.fields.triplane import blur_along_x

    size = 32
    x_stripes = (torch.arange(size) % 2).float().expand(size, size)  # varies along x (columns)
    planes = torch.stack((x_stripes, x_stripes.T, x_stripes))[None, :, None].repeat(2, 1, 3, 1, 1)  # [2, 3, 3, H, W]
    planes[:, 0, 1] = x_stripes.T  # a channel of stripes along y on the blurred plane
    planes[:, 0, 2] = 0.7  # and a constant one
    mask = torch.zeros(size, size)
    mask[8:24, 8:24] = 1
    blurred = blur_along_x(planes, 0, mask, sigma=2.0)
    inside, outside = blurred[:, 0, 0, 8:24, 10:22], blurred[:, 0, 0, :8]
    assert (inside - 0.5).abs().max() < 0.02  # the stripes' mean
    torch.testing.assert_close(outside, planes[:, 0, 0, :8])
    torch.testing.assert_close(blurred[:, 0, 1:], planes[:, 0, 1:])  # y stripes and a constant: nothing along x
    torch.testing.assert_close(blurred[:, 1:], planes[:, 1:])
    half = blur_along_x(planes, 0, mask * 0.5, sigma=2.0)  # a mask weight of ½ goes half way
    torch.testing.assert_close(half[:, 0, 0], (planes[:, 0, 0] + blurred[:, 0, 0]) / 2)
    per_frame = blur_along_x(planes, 0, mask * torch.tensor([1.0, 0.0])[:, None, None, None], sigma=2.0)
    torch.testing.assert_close(per_frame[0], blurred[0])  # a [B, 1, H, W] mask: frame by frame
    torch.testing.assert_close(per_frame[1], planes[1])


def test_confinement_arguments_round_trip_and_name_real_planes() -> None:
    confinement = Confinement((-0.1, 0.1, -0.2, 0.0, 0.0, 0.3), 0.02, (0, 2))
    assert confinement.arguments == [-0.1, 0.1, -0.2, 0.0, 0.0, 0.3, 0.02, 0.0, 2.0]
    assert Confinement.from_arguments(confinement.arguments) == confinement
    for planes in ((), (3,), (0, 0)):
        with pytest.raises(ValueError, match="distinct planes"):
            Confinement(confinement.box, 0.02, planes)


@pytest.mark.cuda
@pytest.mark.parametrize("plane_ids", [(0, 1, 2), (0,), (2, 1)])
def test_triton_lookup_matches_grid_sample_values_and_gradients(plane_ids: tuple[int, ...],
                                                                triton_device: torch.device) -> None:
    """The training lookup against `grid_sample`, on non-square planes, with points beyond the box (zero padding)
    and texels hit by many points (the backward's atomics add up)."""
    device = triton_device
    from deltaplane.fields.triplane_triton import triplane_lookup

    generator = torch.Generator().manual_seed(0)
    planes = torch.randn(2, len(plane_ids), 16, 6, 10, generator=generator).to(device).requires_grad_()
    points = (1.4 * torch.rand(2, 300, 3, generator=generator) - 0.7).to(device)
    expected = sample_triplane_grid(planes, points, 0.9, plane_ids)
    channels_last = planes.permute(0, 1, 3, 4, 2).contiguous()
    values = triplane_lookup(channels_last, points, 0.9, list(plane_ids))
    torch.testing.assert_close(values, expected, rtol=1e-5, atol=1e-6)
    head = torch.randn_like(expected)
    (grad,) = torch.autograd.grad((values * head).sum(), planes)
    (grad_expected,) = torch.autograd.grad((expected * head).sum(), planes)
    torch.testing.assert_close(grad, grad_expected, rtol=1e-5, atol=1e-5)
    assert grad.abs().sum() > 0
    with pytest.raises(NotImplementedError, match="no gradient to the points"):
        points_with_grad = points.clone().requires_grad_()
        torch.autograd.grad(triplane_lookup(channels_last, points_with_grad, 0.9, list(plane_ids)).sum(),
                            points_with_grad)
