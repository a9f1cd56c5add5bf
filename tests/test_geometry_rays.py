"""Pixel-centre rays: principal ray is +z / the camera forward, OpenCV axes, row-major order, consistency with
`project`, resolution override; `rows_times`, the small matrix product they use, against `@`."""

from __future__ import annotations

import torch

from deltaplane.geometry.cameras import Cameras, intrinsics_from_focal, orbit_cameras, project, rows_times
from deltaplane.geometry.rays import pixel_rays


def _identity_camera(height: int, width: int) -> Cameras:
    return Cameras(torch.eye(4)[None], intrinsics_from_focal(1.0, height, width), height, width)


def test_principal_ray_is_camera_z_and_world_forward() -> None:
    height, width = 5, 7  # odd sizes: the principal point (W/2, H/2) is a pixel centre
    centre = (height // 2) * width + width // 2
    _, directions = pixel_rays(_identity_camera(height, width))
    torch.testing.assert_close(directions[0, centre], torch.tensor([0.0, 0.0, 1.0]))

    cameras = orbit_cameras(torch.tensor([0.3, -0.2]), torch.tensor([0.1, 0.25]), height, width,
                            roll=torch.tensor([0.0, 0.4]))
    origins, directions = pixel_rays(cameras)
    torch.testing.assert_close(directions[:, centre], cameras.cam2world[:, :3, 2])
    torch.testing.assert_close(origins, cameras.cam2world[:, None, :3, 3].expand_as(origins))
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(2, height * width))


def test_opencv_axes_and_row_major_order() -> None:
    height, width = 5, 7
    _, directions = pixel_rays(_identity_camera(height, width))
    grid = directions[0].reshape(height, width, 3)  # [row, col, xyz]
    centre_row, centre_col = height // 2, width // 2
    assert grid[centre_row, centre_col + 1, 0] > 0 and abs(grid[centre_row, centre_col + 1, 1]) < 1e-7
    assert grid[centre_row + 1, centre_col, 1] > 0 and abs(grid[centre_row + 1, centre_col, 0]) < 1e-7
    assert grid[0, 0, 0] < 0 and grid[0, 0, 1] < 0
    # focal = 1 image width: the ray through the right edge of the image has x/z = 0.5.
    edge_x = (width - 0.5 - width / 2) / width
    torch.testing.assert_close(grid[centre_row, -1, 0] / grid[centre_row, -1, 2], torch.tensor(edge_x))


def test_points_on_rays_project_to_pixel_centres() -> None:
    height, width = 4, 6
    cameras = orbit_cameras(torch.tensor([0.2]), torch.tensor([-0.15]), height, width, roll=torch.tensor([0.3]))
    origins, directions = pixel_rays(cameras)
    pixels = project(origins + 2.6 * directions, cameras.cam2world, cameras.intrinsics)  # [1, H·W, 2]
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    expected = torch.stack((cols.flatten() + 0.5, rows.flatten() + 0.5), dim=-1).float()
    torch.testing.assert_close(pixels[0], expected, atol=1e-4, rtol=0)


def test_resolution_override_keeps_the_field_of_view() -> None:
    cameras = orbit_cameras(torch.tensor([0.1]), torch.tensor([0.0]), 64, 64)
    origins, directions = pixel_rays(cameras, height=8, width=8)
    assert origins.shape == directions.shape == (1, 64, 3)
    # Small pixel (row 0, col 7) covers full-resolution columns 56..63 and rows 0..7: centre (60, 4) at 64².
    pixel = project(origins[:, 7:8] + 2.7 * directions[:, 7:8], cameras.cam2world, cameras.intrinsics)
    torch.testing.assert_close(pixel[0, 0], torch.tensor([60.0, 4.0]), atol=1e-4, rtol=0)


def test_float64_and_dtype_follow_the_cameras() -> None:
    cameras = orbit_cameras(torch.tensor([0.1], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64), 3, 3)
    origins, directions = pixel_rays(cameras)
    assert origins.dtype == directions.dtype == torch.float64


def test_rows_times_is_the_matrix_product() -> None:
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(2, 50, 3, generator=generator, dtype=torch.float64)
    matrices = torch.randn(2, 3, 3, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(rows_times(rows, matrices), rows @ matrices)
    # one set of rows for a batch of matrices (the fast path's camera directions), non-square, unbatched
    torch.testing.assert_close(rows_times(rows[0], matrices), rows[0] @ matrices)
    wide = torch.randn(2, 2, 4, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(rows_times(rows[..., :2], wide), rows[..., :2] @ wide)
    torch.testing.assert_close(rows_times(rows[0], matrices[0]), rows[0] @ matrices[0])
