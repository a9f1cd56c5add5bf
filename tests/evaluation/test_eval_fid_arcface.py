"""`deltaplane evaluate --pred --gt` with FID and ArcFace weights (real architectures, random values) on short videos
cut from the synthetic subject: a video against itself has FID 0 and cosine 1, an altered copy scores worse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from deltaplane.audio.io import load_audio
from deltaplane.cli import main
from deltaplane.evaluation.scoring import EvaluationConfig
from deltaplane.evaluation.videos import evaluate_videos
from deltaplane.media.video import VideoWriter, iter_frames

NUM_FRAMES = 6


def _excerpt(source: Path, target: Path, shift: int = 0, gain: float = 1.0) -> Path:
    """The first frames of `source` with its audio, rolled `shift` pixels to the right and scaled by `gain`."""
    with VideoWriter(target, 25.0, audio=load_audio(source)[:NUM_FRAMES * 640]) as writer:
        for index, frame in enumerate(iter_frames(source, 25.0)):
            if index == NUM_FRAMES:
                break
            writer.write((np.roll(frame, shift, axis=1) * gain).astype(np.uint8))
    return target


def test_fid_and_arcface_scores(synthetic_clip: Path, inception_file: Path, arcface_file: Path,
                                tmp_path: Path) -> None:
    truth = _excerpt(synthetic_clip, tmp_path / "truth.mp4")
    altered = _excerpt(synthetic_clip, tmp_path / "altered.mp4", shift=12, gain=0.6)
    config = EvaluationConfig(identity_every=4, inception=inception_file, fid_every=2, arcface=arcface_file)
    same = evaluate_videos(truth, truth, tmp_path / "same", config, torch.device("cpu"))
    main(["evaluate", "--pred", str(altered), "--gt", str(truth), "-o", str(tmp_path / "altered"),
          "--inception", str(inception_file), "--fid-every", "2", "--arcface", str(arcface_file),
          "--identity-every", "4", "--quiet"])
    worse = json.loads((tmp_path / "altered" / "metrics.json").read_text())
    for metrics in (same, worse):
        assert metrics["fid_frames"] == 3 and metrics["fid_every"] == 2  # frames 0, 2, 4
        assert metrics["id_frames"] == 2  # frames 0 and 4, where both videos have a face
        assert "fid" not in metrics["skipped"] and "id_arcface" not in metrics["skipped"]
    assert worse["fid"] > 0.0 and abs(same["fid"]) < 1e-6 * worse["fid"]
    assert same["id_arcface"] == pytest.approx(1.0, abs=1e-5) and -1.0 <= worse["id_arcface"] < 0.999
    page = (tmp_path / "altered" / "report.html").read_text()
    assert "id_arcface" in page and "fid_frames" in page


def test_without_weights_fid_and_arcface_are_skipped_with_the_flag_to_give(synthetic_clip: Path,
                                                                            tmp_path: Path) -> None:
    truth = _excerpt(synthetic_clip, tmp_path / "truth.mp4")
    metrics = evaluate_videos(truth, truth, tmp_path / "out", EvaluationConfig(identity_every=4),
                              torch.device("cpu"))
    assert "fid" not in metrics and "id_arcface" not in metrics
    assert "--inception" in metrics["skipped"]["fid"] and "--arcface" in metrics["skipped"]["id_arcface"]
