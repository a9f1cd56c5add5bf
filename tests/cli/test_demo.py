"""The offline demo end to end (synthetic subject → preprocess → train → render): the README's main job."""

from __future__ import annotations

import json
from pathlib import Path

import av

from deltaplane import api
from deltaplane.media.video import read_video_metadata
from deltaplane.watermark import detect_video


def _durations(path: Path) -> dict[str, float]:
    with av.open(str(path)) as container:
        return {stream.type: float(stream.duration * stream.time_base) for stream in container.streams}


def test_demo_runs_end_to_end_and_resumes(tmp_path: Path) -> None:
    outputs = api.demo(tmp_path / "demo", steps=12, progress=False)
    for camera in ("dataset", "orbit"):
        video = outputs[f"video_{camera}"]
        durations = _durations(video)
        assert abs(durations["video"] - durations["audio"]) <= 1 / 25 + 1e-6
        assert abs(durations["video"] - 4.0) <= 1 / 25 + 1e-6
        assert "synthetic" in read_video_metadata(video)["comment"]
        assert detect_video(video).detected
    assert (tmp_path / "demo" / "depth_orbit.mp4").is_file()
    metrics = json.loads((outputs["evaluation"] / "metrics.json").read_text())
    assert metrics["test/frames"] > 0 and "view/yaw+30/faces/missing" in metrics
    assert (outputs["evaluation"] / "report.html").is_file()
    # A second run finds every stage and the checkpoint done and only re-renders.
    stamp = (tmp_path / "demo" / "dataset" / "tracks.npz").stat().st_mtime_ns
    api.demo(tmp_path / "demo", steps=12, progress=False)
    assert (tmp_path / "demo" / "dataset" / "tracks.npz").stat().st_mtime_ns == stamp
