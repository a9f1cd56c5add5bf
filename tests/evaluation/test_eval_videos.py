"""`evaluate --pred --gt` on real clips: identical videos score perfectly, a one-pixel shift scores a little worse
and another person much worse, and audio delayed by 5 frames moves the landmark sync offset by 5 frames."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from deltaplane.audio.io import load_audio
from deltaplane.cli import main
from deltaplane.evaluation.scoring import EvaluationConfig
from deltaplane.evaluation.videos import evaluate_videos
from deltaplane.media.video import VideoWriter, iter_frames
from deltaplane.metrics.lpips import LPIPS
from deltaplane.metrics.syncnet import SyncNetV2

pytestmark = pytest.mark.shared_data
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def lpips_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random AlexNet LPIPS in the lpips package's full-model format (the loader is tested in test_metrics_lpips)."""
    torch.manual_seed(0)
    model = LPIPS("alex")
    for k in range(5):
        head = getattr(model, f"lin{k}").model[1]
        head.weight.copy_(torch.rand_like(head.weight) * 0.1)
    path = tmp_path_factory.mktemp("lpips") / "lpips_alex.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def syncnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random SyncNet v2 saved like syncnet_v2.model (the loader is tested in test_metrics_syncnet)."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(SyncNetV2().state_dict(), path)
    return path


def _rewrite(source: Path, target: Path, shift_pixels: int = 0, delay_frames: int = 0,
             num_frames: int | None = None) -> Path:
    """Re-encode (the first `num_frames` of) `source` with its frames shifted right (edge column repeated) and/or
    its audio delayed."""
    audio = load_audio(source)
    audio = np.concatenate([np.zeros(delay_frames * 640, np.float32), audio])[:audio.shape[0]]
    with VideoWriter(target, 25.0, audio=audio) as writer:
        for index, frame in enumerate(iter_frames(source, 25.0)):
            if index == num_frames:
                break
            if shift_pixels:
                frame = np.concatenate([np.repeat(frame[:, :1], shift_pixels, 1), frame[:, :-shift_pixels]], 1)
            writer.write(frame)
    return target


def test_identical_videos_score_perfectly(clip_excerpt, lpips_file: Path, tmp_path: Path) -> None:
    katie = clip_excerpt("katie_8s.mp4", 1.0)
    config = EvaluationConfig(lpips_weights=lpips_file, lpips_every=12)  # LPIPS at 512² takes ~1 s on 2 cores
    metrics = evaluate_videos(katie, katie, tmp_path / "out", config, CPU)
    assert metrics["frames"] == 25 and metrics["faces/missing_pred"] == metrics["faces/missing_gt"] == 0
    assert math.isinf(metrics["psnr"]) and math.isinf(metrics["psnr_face"])
    assert math.isinf(metrics["psnr_eyes"]) and math.isinf(metrics["psnr_mouth"])
    assert metrics["bias_eyes"] == metrics["bias_mouth"] == 0.0
    assert metrics["ssim"] == pytest.approx(1.0, abs=1e-6) and metrics["ssim_face"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["lmd"] == metrics["lmd_offset"] == metrics["lmd_motion"] == 0.0 and metrics["blink_error"] == 0.0
    assert metrics["id_distance"] == 0.0 and metrics["id_frames"] == 3  # frames 0, 10, 20
    assert metrics["lpips"] == pytest.approx(0.0, abs=1e-6) and metrics["lpips_every"] == 12
    assert metrics["mouth/opening_std_ratio"] == metrics["mouth/opening_mean_ratio"] == 1.0
    assert metrics["eyes/openness_std_ratio"] == 1.0 and metrics["eyes/openness_correlation"] == pytest.approx(1.0)
    assert metrics["mouth/open_fraction"] == metrics["mouth/open_fraction_reference"]
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert math.isinf(written["psnr"]) and "lpips" not in written["skipped"]
    assert "sync/lse_c" in written["skipped"] and "fid" in written["skipped"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "data:image/png;base64," in page and "mouth contact sheet" in page


def test_a_frozen_frame_scores_a_still_mouth(clip_excerpt, tmp_path: Path) -> None:
    katie = clip_excerpt("katie_8s.mp4", 1.0)
    first = next(iter_frames(katie, 25.0))
    frozen = tmp_path / "frozen.mp4"
    with VideoWriter(frozen, 25.0, audio=load_audio(katie)) as writer:
        for _ in range(25):
            writer.write(first)
    metrics = evaluate_videos(frozen, katie, tmp_path / "out", EvaluationConfig(identity_every=1000), CPU)
    # Not exactly 0: the tracker's landmarks jitter a little on repeated (re-encoded) frames; the noise floor is ~0.05.
    assert metrics["mouth/opening_std_ratio"] < 0.1
    assert metrics["mouth/open_fraction"] in (0.0, 1.0) and 0.0 < metrics["mouth/open_fraction_reference"] < 0.5


def test_a_pixel_shift_and_another_person_go_the_expected_direction(clip_excerpt, lpips_file: Path,
                                                                     syncnet_file: Path, tmp_path: Path) -> None:
    katie = clip_excerpt("katie_8s.mp4", 1.0)
    shifted = _rewrite(katie, tmp_path / "shifted.mp4", shift_pixels=1)
    config = EvaluationConfig(lpips_weights=lpips_file, lpips_every=12, syncnet_v2=syncnet_file)
    near = evaluate_videos(shifted, katie, tmp_path / "near", config, CPU)
    main(["evaluate", "--pred", str(clip_excerpt("may_5s.mp4", 1.0)), "--gt", str(katie), "-o", str(tmp_path / "far"),
          "--lpips-weights", str(lpips_file), "--lpips-every", "12", "--quiet"])
    far = json.loads((tmp_path / "far" / "metrics.json").read_text())
    assert 25.0 < near["psnr"] < math.inf and far["psnr"] < near["psnr"] - 10.0
    assert far["ssim"] < near["ssim"] < 1.0 and far["ssim_face"] < near["ssim_face"] < 1.0
    assert 0.0 < near["lmd"] < 2.0 < far["lmd"]
    assert far["lmd_offset"] > near["lmd_offset"] and 0.0 < far["lmd_motion"] < far["lmd"]  # another person's mouth
    assert near["blink_error"] < far["blink_error"]
    assert 0.0 < near["lpips"] < far["lpips"]
    assert near["id_distance"] < 0.3 and far["id_distance"] > 0.6  # dlib's same-person threshold is 0.6
    assert near["id_same_person"] == 1.0 and far["id_same_person"] == 0.0
    assert {"sync/lse_c", "sync/lse_d", "sync/lse_offset_frames"} <= near.keys()  # a random SyncNet: any values
    assert "sync/lse_c" in far["skipped"]


def test_audio_delayed_by_five_frames_is_detected(shared_data: Path, tmp_path: Path) -> None:
    original = shared_data / "clips" / "katie_8s.mp4"
    delayed = _rewrite(original, tmp_path / "delayed.mp4", delay_frames=5, num_frames=125)  # the first 5 s
    metrics = evaluate_videos(delayed, original, tmp_path / "out", EvaluationConfig(identity_every=1000), CPU)
    # The ground truth with its own audio is the reference: delaying the sound moves the best offset by −5 frames.
    assert metrics["gt/sync/offset_frames"] - metrics["sync/offset_frames"] in (4, 5, 6)
    assert metrics["sync/correlation"] > 0.2 and metrics["gt/sync/correlation"] > 0.2
    assert metrics["frames"] == 125 and metrics["psnr"] > 30.0  # the same frames, re-encoded
