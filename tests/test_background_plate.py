"""The background plate (issue 11): recovery from frames, the ray/plane camera math, compositing, and a tiny
plate-mode training run whose checkpoint renders novel views over the plate's plane and dataset cameras over the
training frames' warps."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deltaplane.config_io import from_dict, to_dict
from deltaplane.data.background import BACKGROUND_PNG, recover_background
from deltaplane import api
from deltaplane.audio.io import load_audio, write_wav
from deltaplane.checkpoint import DRIVING_TRACKS
from deltaplane.cli import main
from deltaplane.data.dataset import load_clip, make_batch, to_signed
from deltaplane.errors import InputError
from deltaplane.geometry.cameras import Cameras, orbit_cam2world, orbit_cameras, project
from deltaplane.geometry.rays import pixel_rays
from deltaplane.inference import camera_path, load_run, plate_warp_path, render_clip
from deltaplane.media.video import iter_frames
from deltaplane.models.triplane_talker import TriplaneTalker, TriplaneTalkerConfig
from deltaplane.presets import get_preset
from deltaplane.render.plate import (pixel_coordinates, plane_coordinates, sample_plate, unwarp_coordinates,
                                     window_warp)
from deltaplane.structs import Conditions
from deltaplane.training.logging import read_log
from deltaplane.training.trainer import train

CPU = torch.device("cpu")
DEPTH = 3.1


def _backdrop(height: int, width: int) -> np.ndarray:
    """A smooth colour ramp (uint8 RGB)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([40 + 2.0 * x, 200 - 1.5 * y, 90 + x + 0.5 * y], axis=-1).round().astype(np.uint8)


def test_moving_square_leaves_the_background_exactly_and_a_smooth_fill_where_it_always_stood() -> None:
    size, side = 64, 24
    backdrop = _backdrop(size, size)
    frames, background = [], []
    for left in range(8, 21, 2):  # the square slides right; columns 20..31 stay covered in every frame
        frame, mask = backdrop.copy(), np.ones((size, size), bool)
        frame[20:20 + side, left:left + side] = (255, 0, 255)
        mask[20:20 + side, left:left + side] = False
        frames.append(frame)
        background.append(mask)
    plate, observed = recover_background(np.stack(frames), np.stack(background), dilation=0)
    always = ~np.stack(background).any(axis=0)
    assert always.sum() > 0 and (observed == ~always).all()
    np.testing.assert_array_equal(plate[observed], backdrop[observed])
    # The fill stays within the colours around it and changes gently from pixel to pixel.
    filled = plate.astype(np.float32)
    assert np.abs(filled[always] - backdrop[always].astype(np.float32)).mean() < 4  # the ramp, nearly
    for axis in (0, 1):  # the ramp itself steps by up to 2 grey levels per pixel
        inside = np.moveaxis(always, axis, 0)
        steps = np.abs(np.diff(np.moveaxis(filled, axis, 0), axis=0))[inside[1:] & inside[:-1]]
        assert steps.max() <= 4, steps.max()


def test_registered_recovery_undoes_each_frames_shift() -> None:
    backdrop = _backdrop(48, 48)
    shifts = [(0, 0), (3, -2), (-4, 1), (2, 5)]
    frames = np.stack([np.roll(backdrop, (-dy, -dx), axis=(0, 1)) for dx, dy in shifts])  # frame(p) = plate(p + d)
    warps = np.array([[[1, 0, -dx], [0, 1, -dy]] for dx, dy in shifts], np.float64)  # plate → frame: q − d
    plate, observed = recover_background(frames, np.ones(frames.shape[:3], bool), dilation=0, warps=warps)
    inner = np.zeros_like(observed)
    inner[5:-5, 5:-5] = True  # away from np.roll's wrap-around
    assert observed[inner].all()
    np.testing.assert_array_equal(plate[inner], backdrop[inner])


def _anchor(size: int) -> Cameras:
    return orbit_cameras(torch.tensor([0.05]), torch.tensor([-0.04]), size, size, roll=torch.tensor([0.02]))


def test_a_windows_warp_finds_the_plate_where_its_frame_does() -> None:
    """`window_warp`: each pixel of a window, unwarped with the moved warp, lands on the plate point that the same
    pixel of the whole frame lands on with the frame's warp (turned, scaled and moved warps)."""
    frame, size = 64, 24
    corners = torch.tensor([[8, 16], [40, 0]])
    warps = torch.tensor([[[0.9, 0.1, 0.08], [-0.05, 1.1, -0.04]], [[1.2, -0.2, -0.1], [0.15, 0.8, 0.05]]])
    whole = unwarp_coordinates(pixel_coordinates(orbit_cameras(torch.zeros(2), torch.zeros(2), frame, frame)), warps)
    seen = unwarp_coordinates(pixel_coordinates(orbit_cameras(torch.zeros(2), torch.zeros(2), size, size)),
                              window_warp(warps, corners, size, frame))
    for index, (x, y) in enumerate(corners.tolist()):
        torch.testing.assert_close(seen[index].reshape(size, size, 2),
                                   whole[index].reshape(frame, frame, 2)[y:y + size, x:x + size], atol=1e-6, rtol=0)


def test_plane_coordinates_return_the_plate_under_its_camera_and_parallax_under_others() -> None:
    size = 40
    anchor = _anchor(size)
    origins, directions = pixel_rays(anchor)
    coordinates = plane_coordinates(origins, directions, anchor, DEPTH)
    torch.testing.assert_close(coordinates, pixel_coordinates(anchor), rtol=0, atol=1e-6)
    texture = torch.rand(1, 3, size, size)
    torch.testing.assert_close(sample_plate(texture, coordinates, size, size), texture, rtol=0, atol=1e-5)
    # A novel camera: the plane point its pixel sees (anchor pixel (u, v) at camera depth DEPTH) projects back onto
    # that pixel, so the plate moves as a plane at that depth does.
    novel = orbit_cameras(torch.tensor([math.radians(30)]), torch.tensor([math.radians(-20)]), size, size)
    origins, directions = pixel_rays(novel)
    seen = plane_coordinates(origins, directions, anchor, DEPTH)[0]  # [R, 2]
    pixels = torch.cat((seen * size, torch.ones(seen.shape[0], 1)), dim=1)
    camera_points = pixels @ torch.linalg.inv(anchor.intrinsics[0]).T * DEPTH  # on the plane, anchor frame
    world = camera_points @ anchor.cam2world[0, :3, :3].T + anchor.cam2world[0, :3, 3]
    torch.testing.assert_close(project(world, novel.cam2world[0], novel.intrinsics[0]) / size,
                               pixel_coordinates(novel)[0], rtol=0, atol=1e-4)
    assert (seen - pixel_coordinates(novel)[0]).abs().max() > 0.1  # it did move


def _plate_model(seed: int = 0) -> TriplaneTalker:
    """The tiny model in plate mode with an empty field (density −200 everywhere: zero opacity in float32) and a
    random plate seen from `_anchor`."""
    config, _ = get_preset("tiny")
    torch.manual_seed(seed)
    model = TriplaneTalker(dataclasses.replace(config, background="plate")).eval()
    _empty_field(model)
    size = config.output_resolution
    model.load_background_plate(torch.rand(3, size, size) * 2 - 1, _anchor(size))
    return model


def _empty_field(model: TriplaneTalker) -> None:
    last = model.field.decoder.net[-1]
    with torch.no_grad():
        last.weight[0].zero_()
        last.bias[0] = -200.0


def _conditions(model: TriplaneTalker, batch: int) -> Conditions:
    generator = torch.Generator().manual_seed(3)
    return Conditions(audio=torch.randn(batch, 8, 16, model.config.audio.feature_dim, generator=generator),
                      eye=torch.full((batch,), 0.25), angles=torch.zeros(batch, 3), landmarks=torch.zeros(batch, 6))


def test_an_empty_field_renders_exactly_the_plate() -> None:
    model = _plate_model()
    size, raw = model.config.output_resolution, model.config.render_resolution
    with torch.no_grad():
        output, _ = model(_anchor(size), _conditions(model, 1))
        assert output.accumulation.max() == 0
        torch.testing.assert_close(output.rgb[0], model.plate, rtol=0, atol=1e-4)  # float32 rays
        area = torch.nn.functional.interpolate(model.plate[None], size=(raw, raw), mode="area")
        torch.testing.assert_close(output.rgb_raw, area, rtol=0, atol=1e-4)
        novel = orbit_cameras(torch.tensor([math.radians(30)]), torch.tensor([0.0]), size, size)
        output, _ = model(novel, _conditions(model, 1))
        origins, directions = pixel_rays(novel)
        expected = sample_plate(model.plate[None], plane_coordinates(origins, directions, _anchor(size), DEPTH),
                                size, size)
        torch.testing.assert_close(output.rgb, expected, rtol=0, atol=1e-4)


def test_the_depth_spread_sharpens_the_person_only(synthetic_dataset: Path) -> None:
    """In plate mode the backdrop's rays are to be empty: the depth-spread term takes no gradient from them (it drove
    the field to empty everywhere, docs/background.md); in whole-frame mode every pixel is a surface."""
    config, _ = get_preset("tiny")
    _, clip = load_clip(synthetic_dataset, "train", size=config.output_resolution)
    audio = dataclasses.replace(config.audio, feature_dim=clip.audio_features.shape[-1])
    config = dataclasses.replace(config, audio=audio)
    batch = make_batch(clip, torch.tensor([0, 5]), config.render_resolution)
    backdrop, person = batch.person == 0, batch.person > 0.5
    assert backdrop.any() and person.any()
    for mode in ("plate", "field", "fill"):  # fill: the whole frame's losses over the plate
        torch.manual_seed(0)
        model = TriplaneTalker(dataclasses.replace(config, background=mode))
        if mode != "field":
            model.load_background_plate(torch.rand(3, config.output_resolution, config.output_resolution) * 2 - 1,
                                        _anchor(config.output_resolution))
        output, delta = model(batch.cameras, batch.conditions, plate_warp=batch.plate_warp)
        output.depth_spread.retain_grad()
        model.loss_terms(output, delta, batch)["depth_spread"].backward()
        gradient = output.depth_spread.grad
        assert (gradient[person] > 0).all()
        assert (gradient[backdrop] == 0).all() if mode == "plate" else (gradient[backdrop] > 0).all()


def test_fill_mode_trains_the_whole_frame_and_shows_the_plate_where_the_field_leaves_a_ray_empty(
        synthetic_dataset: Path, tmp_path: Path) -> None:
    """"fill": the field empty outside the box over the plate, as plate mode renders, trained with the whole frame's
    losses (the backdrop pushed behind the head, no opacity target): a 2-step run checkpoints the plate, and where
    its field is emptied only the plate shows, from the training camera and from a side view."""
    run_dir = api.train(synthetic_dataset, tmp_path / "run", preset="tiny", steps=2, device="cpu", progress=False,
                        background="fill")
    terms = [record for record in read_log(run_dir) if "loss" in record][-1]
    assert "loss/background_depth" in terms and "loss/alpha" not in terms
    model, _, _ = load_run(run_dir, CPU)
    assert model.config.background == "fill" and model.field.empty_outside and model.plate.abs().sum() > 0
    _empty_field(model)
    size = model.config.output_resolution
    _, clip = load_clip(synthetic_dataset, "train", size=size)
    yaw, pitch, roll = clip.angles.mean(dim=0)
    anchor = Cameras(orbit_cam2world(yaw, pitch, roll)[None], clip.intrinsics[:1], size, size)
    novel = orbit_cameras(torch.tensor([math.radians(30)]), torch.tensor([0.0]), size, size)
    with torch.no_grad():
        for cameras in (anchor, novel):
            output, _ = model(cameras, _conditions(model, 1))
            origins, directions = pixel_rays(cameras)
            coordinates = plane_coordinates(origins, directions, anchor, model.config.background_depth)
            expected = sample_plate(model.plate[None], coordinates, size, size)
            torch.testing.assert_close(output.rgb, expected, rtol=0, atol=1e-4)


def test_runs_of_older_versions_load_in_whole_frame_mode() -> None:
    config, _ = get_preset("tiny")
    saved = to_dict(config)
    del saved["background"]  # config.json of a run trained before the plate existed
    rebuilt = from_dict(TriplaneTalkerConfig, saved)
    assert rebuilt.background == "field"
    assert not any(name.startswith("plate") for name in TriplaneTalker(rebuilt).state_dict())


@pytest.fixture(scope="module")
def plate_run(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny plate-mode run trained for 2 steps on CPU on the synthetic dataset."""
    model_config, train_config = get_preset("tiny")
    model_config = dataclasses.replace(model_config, background="plate")
    train_config = dataclasses.replace(train_config, steps=2, eval_every=0, sample_every=1000)
    run_dir = tmp_path_factory.mktemp("plate-run") / "run"
    train(synthetic_dataset, run_dir, model_config, train_config, "tiny", CPU, progress=False)
    return run_dir


def test_tiny_plate_training_checkpoints_the_plate_and_renders_novel_views_over_it(synthetic_dataset: Path,
                                                                                   plate_run: Path) -> None:
    terms = [record for record in read_log(plate_run) if "loss" in record][-1]
    assert "loss/alpha" in terms and "loss/background_depth" not in terms

    model, _, _ = load_run(plate_run, CPU)  # from the checkpoint alone
    assert model.config.background == "plate"
    png = cv2.imread(str(synthetic_dataset / BACKGROUND_PNG))[..., ::-1].copy()
    plate = to_signed(torch.from_numpy(png).permute(2, 0, 1)[None])[0]
    assert plate.shape[-1] == model.config.output_resolution  # the synthetic dataset is 128², as tiny's output
    torch.testing.assert_close(model.plate, plate)

    _, clip = load_clip(synthetic_dataset, "train", size=model.config.output_resolution)
    size = model.config.output_resolution
    yaw, pitch, roll = clip.angles.mean(dim=0)
    anchor = Cameras(orbit_cam2world(yaw, pitch, roll)[None], clip.intrinsics[:1], size, size)
    novel = orbit_cameras(torch.tensor([math.radians(30)]), torch.tensor([0.0]), size, size)
    _empty_field(model)  # the field's two training steps leave it cloudy everywhere; emptied, only the plate shows
    with torch.no_grad():
        output, _ = model(novel, _conditions(model, 1))
    origins, directions = pixel_rays(novel)
    coordinates = plane_coordinates(origins, directions, anchor, model.config.background_depth)
    torch.testing.assert_close(output.rgb, sample_plate(plate[None], coordinates, size, size), rtol=0, atol=1e-4)


def test_train_takes_the_background_for_a_new_run_and_refuses_another_on_resume(
        synthetic_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    main(["train", str(synthetic_dataset), "-o", str(run_dir), "--preset", "tiny", "--steps", "1", "--quiet",
          "--background", "plate"])
    model, _, _ = load_run(run_dir, CPU)
    assert model.config.background == "plate" and model.plate.abs().sum() > 0
    before = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(synthetic_dataset), "-o", str(run_dir), "--preset", "tiny", "--steps", "2", "--quiet",
              "--resume", "--background", "field"])
    assert exit_info.value.code == 2 and "'plate' background" in capsys.readouterr().err
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == before  # nothing trained or lost
    with pytest.raises(InputError, match="'field', 'plate' or 'fill'"):  # the one-command run checks it before any work
        api.run(tmp_path / "talk.mp4", tmp_path / "work", background="sky")
    assert not (tmp_path / "work").exists()


def test_plate_warps_are_resolution_free_and_average_to_the_identity(synthetic_dataset: Path) -> None:
    """The plate's reference frame is the mean of the training frames', in units of the image side."""
    small, large = (load_clip(synthetic_dataset, "train", size=size)[1].plate_warps for size in (32, 128))
    torch.testing.assert_close(small, large)
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(large.double().mean(dim=0), identity, rtol=0, atol=1e-5)


def test_unwarp_coordinates_invert_the_plate_to_frame_warp() -> None:
    generator = torch.Generator().manual_seed(0)
    warp = torch.eye(2, 3, dtype=torch.float64) + 0.2 * torch.randn(5, 2, 3, generator=generator,
                                                                    dtype=torch.float64)
    plate_points = torch.rand(5, 40, 2, generator=generator, dtype=torch.float64)
    frame_points = plate_points @ warp[:, :, :2].transpose(-1, -2) + warp[:, None, :, 2]
    torch.testing.assert_close(unwarp_coordinates(frame_points, warp), plate_points, rtol=0, atol=1e-12)


def test_test_frames_are_placed_against_the_training_mean(synthetic_dataset: Path) -> None:
    """Every split's warps use the training split's mean alignment (the plate's reference frame), not their own."""
    _, everything = load_clip(synthetic_dataset, "all", size=32)
    _, test = load_clip(synthetic_dataset, "test", size=32)
    torch.testing.assert_close(test.plate_warps, everything.plate_warps[test.indices], rtol=0, atol=0)


def _replayed(model: TriplaneTalker, synthetic_dataset: Path, driving, count: int):
    """The training-path batch of the training frames that the first `count` dataset-camera frames replay."""
    _, clip = load_clip(synthetic_dataset, "train", size=model.config.output_resolution,
                        normalize_audio=model.config.audio.normalize)
    return make_batch(clip, driving.replay(count), model.config.render_resolution)


def test_dataset_camera_renders_place_the_plate_as_training_does(synthetic_dataset: Path, plate_run: Path) -> None:
    model, _, driving = load_run(plate_run, CPU)
    count = 3
    batch = _replayed(model, synthetic_dataset, driving, count)
    cam2world, warps = camera_path("dataset", count, driving), plate_warp_path("dataset", count, driving)
    torch.testing.assert_close(warps, batch.plate_warp, rtol=0, atol=0)  # the replayed frames' own warps
    assert plate_warp_path("orbit", count, driving) is None  # novel cameras keep the plane

    def rendered(plate_warp: torch.Tensor | None) -> torch.Tensor:
        return torch.stack([rgb for rgb, _ in render_clip(model, batch.conditions, cam2world, batch_size=count,
                                                          plate_warp=plate_warp)])

    with torch.no_grad():  # the training path (`training.evaluation`), same random numbers
        expected, _ = model(batch.cameras, batch.conditions, generator=torch.Generator().manual_seed(0),
                            plate_warp=batch.plate_warp)
    torch.testing.assert_close(rendered(warps), expected.rgb, rtol=0, atol=1e-5)
    _empty_field(model)  # only the plate shows: exactly where the frames show their backdrop, not on the plane
    size = model.config.output_resolution
    coordinates = unwarp_coordinates(pixel_coordinates(batch.cameras), batch.plate_warp)
    placed = rendered(warps)
    torch.testing.assert_close(placed, sample_plate(model.plate[None], coordinates, size, size), rtol=0, atol=1e-4)
    assert (placed - rendered(None)).abs().amax(dim=(1, 2, 3)).min() > 0.05  # the crop motion moved it


def test_old_driving_tracks_without_plate_warps_still_render(plate_run: Path, synthetic_dataset: Path,
                                                             tmp_path: Path) -> None:
    """A run saved before the tracks carried plate warps: dataset-camera renders fall back to the plate's plane."""
    old_run = tmp_path / "old_run"
    old_run.mkdir()
    for item in plate_run.iterdir():
        (old_run / item.name).symlink_to(item)
    (old_run / DRIVING_TRACKS).unlink()
    with np.load(plate_run / DRIVING_TRACKS) as tracks:
        assert "plate_warps" in tracks.files
        np.savez(old_run / DRIVING_TRACKS, **{name: tracks[name] for name in tracks.files if name != "plate_warps"})
    _, _, driving = load_run(old_run, CPU)
    assert driving.plate_warps is None and plate_warp_path("dataset", 4, driving) is None
    speech = tmp_path / "speech.wav"
    write_wav(speech, load_audio(synthetic_dataset / "audio.wav")[:4000])
    video = api.render(old_run, speech, tmp_path / "old.mp4", camera="dataset", watermark=False, device="cpu",
                       progress=False)
    assert len(list(iter_frames(video))) == 6
