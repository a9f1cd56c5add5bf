"""`render --paste-back`: the blend keeps original pixels exactly outside the mask and the render inside, the video
has the source's size and the driving audio, frames loop back and forth with the cameras, and bad sources are one
`error:` line."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deltaplane import api
from deltaplane.audio.io import load_audio, write_wav
from deltaplane.cli import main
from deltaplane.data.dataset import read_arrays
from deltaplane.errors import InputError
from deltaplane.inference import camera_path, load_run
from deltaplane.media.video import VideoWriter, frames_in_order, iter_frames, probe_video
from deltaplane.paste import PasteBackOptions, open_paste_back, paste_weight
from deltaplane.preprocess.align import paste_back, transform_points, warp_to_template
from deltaplane.preprocess.masks import FACE_MIDDLE, HEAD, TORSO

SIZE = 128


def _labels() -> np.ndarray:
    """A parsing map: a head disc with a face inside it, on a torso."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    labels = np.where(yy > 100, TORSO, 0).astype(np.uint8)
    labels[(xx - 64) ** 2 + (yy - 58) ** 2 < 32 ** 2] = HEAD
    labels[(xx - 64) ** 2 / 20 ** 2 + (yy - 64) ** 2 / 26 ** 2 < 1] = FACE_MIDDLE
    return labels


def test_weight_is_one_on_head_and_neck_and_exactly_zero_far_away_and_at_the_border() -> None:
    labels = _labels()
    weight = paste_weight(labels)
    assert weight.shape == labels.shape and weight.dtype == np.float32
    assert (weight[labels >= HEAD] > 0.99).mean() > 0.9
    assert weight[95, 64] > 0.99  # below the chin (row 90): the neck
    assert weight[64, 2] == 0 and weight[120, 10] == 0  # background and shoulder
    assert weight[0].max() == weight[-1].max() == weight[:, 0].max() == weight[:, -1].max() == 0


def test_paste_keeps_the_original_outside_the_mask_exactly_and_the_render_inside() -> None:
    """Round trip: a pattern warped into the aligned frame and pasted back onto another frame comes back inside the
    mask; every pixel outside it is the other frame's, bit for bit."""
    rng = np.random.default_rng(0)
    height, width = 240, 320
    yy, xx = np.mgrid[0:height, 0:width]
    pattern = np.stack([128 + 100 * np.sin(xx / 9.0), 128 + 100 * np.cos(yy / 7.0),
                        128 + 100 * np.sin((xx + yy) / 11.0)], -1).astype(np.uint8)
    original = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    angle, scale = 0.2, 0.9
    affine = np.array([[scale * math.cos(angle), -scale * math.sin(angle), -60.0],
                       [scale * math.sin(angle), scale * math.cos(angle), -10.0]])
    weight = paste_weight(_labels())
    pasted = paste_back(warp_to_template(pattern, affine, SIZE), affine, original, weight=weight)
    assert pasted.shape == original.shape and pasted.dtype == np.uint8

    # Where each original pixel centre lands in the aligned frame, and the weight around it.
    aligned = transform_points(np.stack([xx + 0.5, yy + 0.5], -1).reshape(-1, 2), affine).reshape(height, width, 2)
    cells = np.floor(aligned).astype(int)
    inside_frame = ((cells >= 0) & (cells < SIZE)).all(-1)
    column, row = np.clip(cells[..., 0], 0, SIZE - 1), np.clip(cells[..., 1], 0, SIZE - 1)
    touched = cv2.dilate((weight > 0).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    full = cv2.erode((weight > 0.999).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    outside = ~inside_frame | ~touched[row, column]
    inside = inside_frame & full[row, column]
    assert outside.mean() > 0.3 and inside.mean() > 0.02
    assert np.array_equal(pasted[outside], original[outside])
    error = np.abs(pasted[inside].astype(int) - pattern[inside].astype(int))
    assert error.mean() < 3.0 and np.percentile(error, 99) < 25


@pytest.fixture()
def moved_dataset(synthetic_dataset: Path, tmp_path: Path) -> Path:
    """A copy of the tiny run's dataset whose original video is no longer where its manifest says."""
    dataset = tmp_path / "moved_ds"
    shutil.copytree(synthetic_dataset, dataset)
    manifest = json.loads((dataset / "manifest.json").read_text())
    manifest["source"]["path"] = str(tmp_path / "gone" / "subject.mp4")
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    return dataset


def test_render_pastes_into_the_source_size_with_audio_and_watermark(tiny_run: Path, moved_dataset: Path,
                                                                     synthetic_clip: Path, tmp_path: Path) -> None:
    speech = tmp_path / "speech.wav"
    write_wav(speech, load_audio(moved_dataset / "audio.wav")[: int(1.2 * 16000)])
    output = api.render(tiny_run, speech, tmp_path / "out" / "pasted.mp4", paste_back=True, source=synthetic_clip,
                        dataset=moved_dataset, device="cpu", progress=False)
    info, source = probe_video(output), probe_video(synthetic_clip)
    assert (info.width, info.height) == (source.width, source.height) != (SIZE, SIZE)
    assert info.has_audio and info.num_frames_estimate == 30
    assert api.detect(output).detected  # the mark is embedded in the final, pasted frames
    assert sorted(path.name for path in output.parent.iterdir()) == ["pasted.mp4"]  # written atomically


def test_source_frames_follow_the_replay_order(tiny_run: Path, synthetic_dataset: Path,
                                               synthetic_clip: Path) -> None:
    """Each output frame is pasted into the very recorded frame whose camera it replays, forward then backward."""
    _, config, driving = load_run(tiny_run, torch.device("cpu"))
    pasting = open_paste_back(tiny_run, config, driving, PasteBackOptions())
    length = len(pasting.frames)
    replay = driving.replay(2 * length + 5)
    recorded_cameras = read_arrays(synthetic_dataset / "tracks.npz", None)["cam2world"]
    np.testing.assert_array_equal(camera_path("dataset", len(replay), driving).numpy(),
                                  recorded_cameras[pasting.frames[replay.numpy()]])
    recorded = list(iter_frames(synthetic_clip, 25.0))
    for step, frame in enumerate(pasting.originals(replay, SIZE)):
        assert np.array_equal(frame.rgb, recorded[pasting.frames[replay[step]]])
        np.testing.assert_allclose(frame.affine, pasting.affines[replay[step]] * SIZE / pasting.image_size)
    assert replay[length].item() == length - 2 and replay[2 * length - 2].item() == 0  # the ping-pong turns


def test_source_frames_in_any_order_decode_in_blocks(synthetic_clip: Path) -> None:
    """Small blocks force a seek back at every block of a backward run; the frames are still exact."""
    recorded = list(iter_frames(synthetic_clip, 25.0))
    order = [*range(90, 100), *range(98, 30, -1), 31, 32, 7]
    frames = list(frames_in_order(synthetic_clip, 25.0, order, block=7))
    assert len(frames) == len(order)
    assert all(np.array_equal(frame, recorded[number]) for frame, number in zip(frames, order))
    assert all(np.array_equal(frame, recorded[40 + k]) for k, frame in enumerate(iter_frames(synthetic_clip, 25.0, 40)))


@pytest.mark.parametrize("extra, message", [
    (["--camera", "orbit"], "--paste-back needs --camera dataset"),
    (["--dataset", "moved_ds"], ("gone/subject.mp4 (recorded in moved_ds/manifest.json), but it is missing or was "
                                 "moved; pass --source VIDEO")),
    (["--dataset", "moved_ds", "--source", "nowhere.mp4"], "--source video not found: nowhere.mp4"),
    (["--dataset", "moved_ds", "--source", "small.mp4"], "is 64×64, but"),
    (["--dataset", "missing_ds"], "missing_ds is missing; pass --dataset DIR"),
], ids=["orbit camera", "source moved", "--source missing", "source of another size", "dataset moved"])
def test_bad_paste_back_is_one_error_line(extra: list[str], message: str, tiny_run: Path, moved_dataset: Path,
                                          tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    write_wav(tmp_path / "speech.wav", np.zeros(8000, np.float32))
    with VideoWriter(tmp_path / "small.mp4", 25.0) as writer:
        for _ in range(5):
            writer.write(np.zeros((64, 64, 3), np.uint8))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["render", str(tiny_run), "--audio", "speech.wav", "-o", "out.mp4", "--paste-back", *extra, "--quiet"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "out.mp4").exists()


def test_source_without_paste_back_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    write_wav(tmp_path / "speech.wav", np.zeros(8000, np.float32))
    with pytest.raises(InputError, match="only apply with --paste-back"):
        api.render(tiny_run, tmp_path / "speech.wav", tmp_path / "out.mp4", source=tmp_path / "speech.wav")
