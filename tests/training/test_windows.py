"""Windowed training: a window's camera sees the whole frame's rays at its pixels, the batch's pixel-space inputs
are cut to the same window, a window renders what the whole frame renders there, and training through windows
raises the whole frames' held-out PSNR."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from deltaplane.data.background import background_plate
from deltaplane.data.dataset import load_clip, make_batch
from deltaplane.geometry.cameras import DEFAULT_FOCAL, Cameras, intrinsics_from_focal, orbit_cam2world
from deltaplane.geometry.face_depth import sample_pixels
from deltaplane.geometry.rays import pixel_rays
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.presets import get_preset
from deltaplane.training.logging import read_log
from deltaplane.training.trainer import train
from deltaplane.training.windows import WindowConfig, draw_windows, window_batch

CPU = torch.device("cpu")


def _cameras(size: int) -> Cameras:
    cam2world = orbit_cam2world(torch.tensor([0.1, -0.2]), torch.tensor([0.05, 0.0]))
    return Cameras(cam2world, intrinsics_from_focal(DEFAULT_FOCAL, size, size, batch=2), size, size)


def test_a_window_sees_the_whole_frames_rays_at_its_pixels() -> None:
    full, corners = _cameras(64), torch.tensor([[8, 16], [40, 0]])
    window = full.window(corners, 24, 24)
    for rays in (24, 12):  # at the output resolution, and at half of it as the renderer casts them
        scale = 24 // rays
        origins, directions = (part.reshape(2, 64 // scale, 64 // scale, 3) for part in pixel_rays(full.resized(
            64 // scale, 64 // scale)))
        seen = pixel_rays(window.resized(rays, rays))
        for frame, (x, y) in enumerate((corners // scale).tolist()):
            for part, whole in zip(seen, (origins, directions)):
                torch.testing.assert_close(part[frame].reshape(rays, rays, 3),
                                           whole[frame, y:y + rays, x:x + rays], atol=1e-5, rtol=1e-5)


def test_windows_lie_in_the_frame_on_whole_rendering_pixels_and_mostly_over_the_face() -> None:
    generator = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[40.0, 50.0, 90.0, 110.0]]).expand(400, 4)
    corners = draw_windows(boxes, WindowConfig(64, face_share=0.75, jitter=8), 128, 4, generator)
    assert corners.dtype == torch.long and (corners % 4 == 0).all()
    assert (corners >= 0).all() and (corners <= 64).all()
    centres = corners + 32
    on_face = ((centres - torch.tensor([65.0, 80.0])).abs() <= 8 + 4).all(-1)  # jitter, then whole pixels
    assert 0.65 < on_face.float().mean() < 0.9
    exact = draw_windows(boxes[:3], WindowConfig(64, face_share=1.0, jitter=0), 128, 4, generator)
    assert exact.tolist() == [[32, 48]] * 3  # (65 − 32, 80 − 32) floored to whole rendering pixels
    with pytest.raises(ValueError, match="multiple"):
        draw_windows(boxes, WindowConfig(66), 128, 4, generator)


def test_the_other_windows_teach_every_pixel_out_to_the_frames_edges() -> None:
    """The windows off the face tile the frame: each pixel, the border's too, lies in about 1/n² of them or more."""
    boxes = torch.tensor([[40.0, 50.0, 90.0, 110.0]]).expand(1000, 4)
    pixels = torch.arange(128)
    for size, tiles in ((80, 2), (48, 3), (32, 4), (28, 5)):
        corners = draw_windows(boxes, WindowConfig(size, face_share=0.0), 128, 4, torch.Generator().manual_seed(0))
        assert len(corners.unique(dim=0)) == tiles ** 2
        inside = [(pixels >= start[:, None]) & (pixels < start[:, None] + size) for start in corners.unbind(-1)]
        coverage = (inside[1][:, :, None] & inside[0][:, None, :]).float().mean(0)  # [y, x]
        assert coverage.min() > 0.5 / tiles ** 2, f"{size}: a pixel lies in only {coverage.min():.3f} of them"


def test_a_window_batch_is_the_batch_cut_to_the_window(synthetic_dataset: Path) -> None:
    _, clip = load_clip(synthetic_dataset, "train", size=128)
    batch = make_batch(clip, torch.arange(2), raw_size=32)
    corners = torch.tensor([[32, 16], [0, 64]])
    cut = window_batch(batch, corners, 64)
    for frame, (x, y) in enumerate(corners.tolist()):
        for name in ("images", "mouth_box", "face_box", "eyes_box"):
            assert torch.equal(getattr(cut, name)[frame], getattr(batch, name)[frame, :, y:y + 64, x:x + 64]), name
        for name in ("images_raw", "lower_face", "background", "person"):
            assert torch.equal(getattr(cut, name)[frame],
                               getattr(batch, name)[frame, :, y // 4:y // 4 + 16, x // 4:x // 4 + 16]), name
    # the depth-prior points: the same pixels of the same frames, the ones outside the window no longer valid
    inside = cut.face_point_valid
    assert inside.any() and (inside <= batch.face_point_valid).all() and not torch.equal(inside, batch.face_point_valid)
    whole = sample_pixels(batch.images, batch.face_points[..., :2], 128)
    seen = sample_pixels(cut.images, cut.face_points[..., :2], 64)
    away = inside & ((cut.face_points[..., :2] >= 1) & (cut.face_points[..., :2] < 63)).all(-1)  # bilinear: no border
    torch.testing.assert_close(seen.transpose(1, 2)[away], whole.transpose(1, 2)[away])
    assert (cut.face_point_colour <= inside).all()
    same = window_batch(batch, torch.zeros(2, 2, dtype=torch.long), 128)  # the whole frame: the batch itself
    assert torch.equal(same.images_raw, batch.images_raw) and torch.equal(same.face_point_valid, batch.face_point_valid)
    torch.testing.assert_close(same.cameras.intrinsics, batch.cameras.intrinsics)


@pytest.mark.parametrize("background", ["field", "fill"])
def test_a_window_renders_what_the_whole_frame_renders_there(synthetic_dataset: Path, background: str) -> None:
    """Fixed ray samples (eval): the window's volume rendering is the whole frame's at the same pixels, and its
    super-resolved image too, away from the border that the super-resolution's convolutions see past. Over the
    plate too: the window sees the plate where the frame does, through the frame's warp (turned and moved here)."""
    torch.manual_seed(0)
    manifest, clip = load_clip(synthetic_dataset, "train", size=128)
    config = get_preset("tiny")[0]
    model = TriplaneTalker(dataclasses.replace(config, background=background, audio=dataclasses.replace(
        config.audio, feature_dim=manifest.audio.dim))).eval()
    batch = make_batch(clip, torch.arange(2), raw_size=32)
    if model.config.uses_plate:
        model.load_background_plate(*background_plate(synthetic_dataset, clip))
        model.plate.copy_(torch.rand_like(model.plate) * 2 - 1)  # texture at every scale, seen in every pixel
        batch = dataclasses.replace(batch, plate_warp=torch.tensor([[[0.9, 0.1, 0.08], [-0.05, 1.1, -0.04]],
                                                                    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]))
    corners = torch.tensor([[32, 16], [40, 64]])
    cut = window_batch(batch, corners, 64)
    with torch.no_grad():
        whole, _ = model(batch.cameras, batch.conditions, plate_warp=batch.plate_warp)
        seen, _ = model(cut.cameras, cut.conditions, plate_warp=cut.plate_warp, rays=16)
    assert seen.rgb.shape == (2, 3, 64, 64) and seen.depth.shape == (2, 1, 16, 16)
    for frame, (x, y) in enumerate(corners.tolist()):
        rows, columns = slice(y // 4, y // 4 + 16), slice(x // 4, x // 4 + 16)
        for name in ("rgb_raw", "depth", "accumulation"):
            torch.testing.assert_close(getattr(seen, name)[frame], getattr(whole, name)[frame, :, rows, columns],
                                       atol=1e-4, rtol=1e-4)
        margin = 8  # output pixels the super-resolution's bilinear upsamplings and 3×3 convolutions reach
        torch.testing.assert_close(seen.rgb[frame, :, margin:-margin, margin:-margin],
                                   whole.rgb[frame, :, y + margin:y + 64 - margin, x + margin:x + 64 - margin],
                                   atol=1e-4, rtol=1e-4)


def test_training_through_windows_raises_the_whole_frames_held_out_psnr(synthetic_dataset: Path,
                                                                         tmp_path: Path) -> None:
    model_config, train_config = get_preset("tiny")
    train_config = dataclasses.replace(train_config, steps=160, eval_every=40, checkpoint_every=1000,
                                       sample_every=1000, window=WindowConfig(64))
    train(synthetic_dataset, tmp_path / "run", model_config, train_config, "tiny", CPU, progress=False)
    evals = [r["test/psnr"] for r in read_log(tmp_path / "run") if "test/psnr" in r]
    assert evals[-1] > 16.0 and evals[-1] > evals[0] + 2.0, evals  # evaluated on whole frames (17.7 at 160 steps)
