"""`deltaplane evaluate RUN_DIR` on a tiny run trained for two steps on the synthetic subject: everything renders and
runs, every documented key is either a number or skipped with a reason, and the rendered views are saved as mp4."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from deltaplane.audio.io import load_audio, write_wav
from deltaplane.cli import main
from deltaplane.data.dataset import load_clip
from deltaplane.evaluation.run import evaluate_run, mouth_scale_hint
from deltaplane.evaluation.scoring import EvaluationConfig
from deltaplane.inference import RenderOverrides, load_run
from deltaplane.media.video import probe_video, read_video_metadata
from deltaplane.training.evaluation import evaluate_clip


def _number_or_skipped(metrics: dict, key: str) -> bool:
    value = metrics.get(key)
    return (isinstance(value, (int, float)) and not math.isnan(value)) or bool(metrics["skipped"].get(key))


def test_evaluate_a_tiny_run(tiny_run: Path, synthetic_dataset: Path, inception_file: Path, arcface_file: Path,
                             tmp_path: Path) -> None:
    speech = tmp_path / "speech.wav"
    write_wav(speech, load_audio(synthetic_dataset / "audio.wav")[:2560])  # 4 frames of other audio: one batch
    main(["evaluate", str(tiny_run), "-o", str(tmp_path / "eval"), "--views", "dataset,yaw=+30",
          "--audio", str(speech), "--inception", str(inception_file), "--fid-every", "10",
          "--arcface", str(arcface_file), "--device", "cpu", "--quiet"])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["test/frames"] == 20 and metrics["test/width"] == 128  # the last 20 % of 100 frames, 128²
    for key in ("test/psnr", "test/ssim", "test/faces/missing_pred", "test/faces/missing_gt",
                "view/yaw+30/faces/missing", "cross/speech/faces/missing"):
        assert isinstance(metrics[key], (int, float)), key
    assert metrics["test/faces/missing_gt"] == 0  # the tracker sees the synthetic subject
    assert all(0 <= metrics[f"{name}/faces/detected"] <= 1 for name in ("view/yaw+30", "cross/speech"))
    assert not any(key.startswith("view/dataset/mesh/") for key in (*metrics, *metrics["skipped"]))  # views only
    # The split is rendered as training evaluates it (same cameras and tokens): the same PSNR / SSIM.
    model, _, _ = load_run(tiny_run, torch.device("cpu"))
    _, clip = load_clip(synthetic_dataset, "test", size=model.config.output_resolution)
    during_training = evaluate_clip(model, clip, torch.arange(len(clip)))
    assert metrics["test/psnr"] == pytest.approx(during_training["test/psnr"], abs=0.05)
    assert metrics["test/ssim"] == pytest.approx(during_training["test/ssim"], abs=0.005)
    for key in ("test/psnr_face", "test/lmd", "test/blink_error", "test/id_distance", "test/sync/correlation",
                "test/gt/sync/correlation", "view/dataset/id_distance", "view/yaw+30/id_distance",
                "view/yaw+30/sync/correlation", "cross/speech/id_distance", "cross/speech/sync/correlation", "lpips",
                "sync/lse_c", "test/id_arcface", "view/yaw+30/id_arcface", "cross/speech/id_arcface",
                "test/mouth/opening_std_ratio", "test/mouth/opening_mean_ratio", "test/mouth/open_fraction",
                "test/mouth/open_fraction_reference", "view/yaw+30/mouth/opening_std_ratio",
                "cross/speech/mouth/opening_std_ratio", "view/yaw+30/mesh/offset", "view/yaw+30/mesh/shape"):
        assert _number_or_skipped(metrics, key), key
    # FID of frames 0 and 10 of each render against the same frames of the split; the 4-frame cross render has one.
    assert metrics["test/fid_frames"] == metrics["view/yaw+30/fid_frames"] == 2 and metrics["test/fid_every"] == 10
    assert metrics["test/fid"] > 0 and metrics["view/dataset/fid"] == metrics["test/fid"]
    assert metrics["view/yaw+30/fid"] > 0 and "needs at least 2" in metrics["skipped"]["cross/speech/fid"]
    page = (tmp_path / "eval" / "report.html").read_text()
    assert "<td>yaw+30</td>" in page and "<td>speech</td>" in page  # the view and cross tables
    assert all(f"<th>{column} " in page for column in ("mesh/shape", "background/view_change"))
    assert "<th>audio–video offset</th><td>in step (no shift)</td>" in page  # the synthetic subject speaks in step
    assert page.count("data:image/") >= 5 and "mouth contact sheet" in page  # plots, strip rows, mouths, views
    for name, num_frames in (("dataset", 20), ("yaw+30", 20), ("cross_speech", 4)):
        video = tmp_path / "eval" / "videos" / f"{name}.mp4"
        info = probe_video(video)
        assert info.has_audio and info.num_frames_estimate == num_frames and info.width == 128, name
        assert "synthetic" in read_video_metadata(video)["comment"]
        assert f'href="videos/{name.replace("+", "%2B")}.mp4"' in page
    assert sorted(path.name for path in (tmp_path / "eval" / "videos").iterdir()) == [
        "cross_speech.mp4", "dataset.mp4", "yaw+30.mp4"]  # no temporary files left behind


def test_no_videos_writes_none(tiny_run: Path, tmp_path: Path) -> None:
    evaluate_run(tiny_run, tmp_path / "eval", EvaluationConfig(identity_every=100), torch.device("cpu"),
                 views="dataset", save_videos=False, overrides=RenderOverrides(mouth_x_blur=1.5))
    assert (tmp_path / "eval" / "metrics.json").is_file() and not (tmp_path / "eval" / "videos").exists()
    page = (tmp_path / "eval" / "report.html").read_text()
    assert "Rendered videos" not in page
    # the report names the settings the renders used (the tiny preset has no lip vector, so no mouth scale)
    assert "<th>rendering</th><td>mouth x-blur 1.5 texels</td>" in page


def test_evaluate_needs_a_run_or_two_videos(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--pred", str(tmp_path / "a.mp4"), "-o", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "--pred and --gt" in lines[0]


def test_load_run_replaces_the_runs_mouth_x_blur(tiny_run: Path) -> None:
    """`load_run(..., RenderOverrides(mouth_x_blur=S))` renders the run with the blur at S (`render/evaluate
    --mouth-x-blur`); None keeps the run's own (0 for the tiny preset)."""
    kept, _, _ = load_run(tiny_run, torch.device("cpu"))
    blurred, _, _ = load_run(tiny_run, torch.device("cpu"), RenderOverrides(mouth_x_blur=2.0))
    assert kept.config.mouth_x_blur == 0 and blurred.config.mouth_x_blur == 2.0 and not blurred.training
    for name, value in kept.state_dict().items():
        torch.testing.assert_close(blurred.state_dict()[name], value)


def test_mouth_scale_hint_names_the_factor_for_a_mouth_outside_the_band() -> None:
    """evaluate's report note: the cross-driven files' median opening ratio (else the split's) outside its band →
    the run's mouth scale over that ratio, rounded, within 0.5–2; inside the band, without a ratio, or when that is
    the run's own factor → no note."""
    cross = {f"cross/{name}/mouth/opening_std_ratio": value for name, value in (("a", 0.65), ("b", 0.68), ("c", 0.9))}
    hint = mouth_scale_hint({**cross, "test/mouth/opening_std_ratio": 1.0}, 1.0)
    assert "with the other voices" in hint and "0.68×" in hint and "--mouth-scale 1.5 moves it further" in hint
    assert "--mouth-scale 1.9 moves it further" in mouth_scale_hint(cross, 1.3)  # 1.3 / 0.68, from the run's factor
    assert mouth_scale_hint({"cross/a/mouth/opening_std_ratio": 0.75}, 1.0) is None  # in the band
    own = mouth_scale_hint({"test/mouth/opening_std_ratio": 1.6}, 1.0)
    assert "the split's own audio" in own and "--mouth-scale 0.6 moves it less far" in own
    assert mouth_scale_hint({"test/mouth/opening_std_ratio": 1.1}, 1.0) is None  # the test band is 0.8–1.25
    assert "--mouth-scale 2 " in mouth_scale_hint({"cross/a/mouth/opening_std_ratio": 0.2}, 1.0)  # at most 2
    assert mouth_scale_hint({"cross/a/mouth/opening_std_ratio": 0.2}, 2.0) is None  # nothing further to offer
    assert mouth_scale_hint({"cross/a/mouth/opening_std_ratio": 0.0}, 1.0) is None  # no mouth found to scale
    assert mouth_scale_hint({}, 1.0) is None

