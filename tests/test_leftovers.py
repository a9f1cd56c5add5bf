"""Nothing is left behind by an interrupted or failed command (issue 12, item 7): temporary files of killed
processes are swept by the next command that writes into the same directory, a failed preprocess or evaluate
removes the directories it created, and a resumed run logs every step once."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from deltaplane import api
from deltaplane.atomic import atomic_dir, atomic_path, sweep_stale_temps
from deltaplane.audio.io import load_audio, write_wav
from deltaplane.checkpoint import CHECKPOINTS
from deltaplane.cli import main
from deltaplane.media.video import VideoWriter
from deltaplane.presets import get_preset
from deltaplane.training.logging import read_log
from deltaplane.training.trainer import train

STALE = "deltaplane-k1ll3d_0"
"""The random part of the stale temporary names below (8 characters after the tag, as tempfile makes them)."""
USER_FILES = (".out.mp4.abcd1234.tmp.mp4", "notes.tmp", ".hidden", "x.deltaplane-abcd1234.tmp",
              ".x.deltaplane-abc.tmp", ".x.deltaplane-abcd1234.tmp.mp4.bak", "keep.mp4")
"""Names that look like temporary files but are not ours: no sweep may touch them."""


def _plant(directory: Path, files: tuple[str, ...] = (), dirs: tuple[str, ...] = ()) -> list[Path]:
    """Temporary files and directories as a SIGKILLed process leaves them: named by `atomic_path` / `atomic_dir`,
    half written, and locked by nobody."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in dirs:
        (directory / name).mkdir()
        (directory / name / "model.safetensors").write_bytes(b"half written")
    for name in files:
        (directory / name).write_bytes(b"half written")
    return [directory / name for name in (*files, *dirs)]


def _user_files(directory: Path) -> dict[str, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    for name in USER_FILES:
        (directory / name).write_bytes(name.encode())
    return {name: name.encode() for name in USER_FILES}


def _unchanged(directory: Path, files: dict[str, bytes]) -> bool:
    return all((directory / name).read_bytes() == content for name, content in files.items())


def test_sweep_removes_only_the_unlocked_temporaries_of_our_own_names(tmp_path: Path) -> None:
    stale = _plant(tmp_path, files=(f".out.mp4.{STALE}.tmp.mp4", f".latest.{STALE}.tmp"),
                   dirs=(f".step_0000004.{STALE}.tmp",))
    user = _user_files(tmp_path)
    with atomic_path(tmp_path / "live.mp4") as live_file, atomic_dir(tmp_path / "live_dir") as live_dir:
        sweep_stale_temps(tmp_path)  # the live temporaries are locked by this process's open descriptors
        assert live_file.exists() and live_dir.is_dir()
        assert not any(path.exists() for path in stale)
        assert _unchanged(tmp_path, user)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*USER_FILES, "live.mp4", "live_dir"])


def test_a_sigkilled_writer_leaves_temporaries_that_the_next_write_sweeps(tmp_path: Path) -> None:
    """A real SIGKILL: the process's locks go with it, so its temporaries are stale at once; those of a writer in
    another live process stay."""
    holder = ("import sys\n"
              "from deltaplane.atomic import atomic_path\n"
              "with atomic_path(sys.argv[1] + '/live.mp4') as tmp:\n"
              "    print(tmp, flush=True)\n"
              "    sys.stdin.read()\n")
    killed = ("import os, signal, sys\n"
              "from deltaplane.atomic import atomic_dir, atomic_path\n"
              "with atomic_path(sys.argv[1] + '/out.mp4'), atomic_dir(sys.argv[1] + '/checkpoint'):\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    live = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        live_tmp = Path(live.stdout.readline().strip())
        result = subprocess.run([sys.executable, "-c", killed, str(tmp_path)], timeout=120)
        assert result.returncode == -signal.SIGKILL
        left = sorted(path.name for path in tmp_path.iterdir() if path != live_tmp)
        assert len(left) == 2 and all(".deltaplane-" in name for name in left), left
        user = _user_files(tmp_path)
        with atomic_path(tmp_path / "other.json") as tmp:
            tmp.write_text("{}")
        assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*USER_FILES, "other.json", live_tmp.name])
        assert _unchanged(tmp_path, user)
        live.communicate("", timeout=120)
    finally:
        live.kill()
    assert live.returncode == 0 and (tmp_path / "live.mp4").is_file() and not live_tmp.exists()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory, synthetic_dataset: Path) -> Path:
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    write_wav(path, load_audio(synthetic_dataset / "audio.wav")[:8000])  # half a second: 12 frames
    return path


def test_sigterm_during_render_leaves_nothing(tiny_run: Path, synthetic_dataset: Path, tmp_path: Path) -> None:
    """SIGTERM unwinds like Ctrl-C: the half-written mp4 is deleted and the exit status is 130."""
    long_speech = tmp_path / "long.wav"
    write_wav(long_speech, np.tile(load_audio(synthetic_dataset / "audio.wav"), 10))  # 40 s: minutes on CPU
    out = tmp_path / "renders" / "out.mp4"
    process = subprocess.Popen([sys.executable, "-m", "deltaplane.cli", "render", str(tiny_run), "--audio",
                                str(long_speech), "-o", str(out), "--device", "cpu", "--quiet"],
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list(out.parent.glob(".out.mp4.deltaplane-*.tmp.mp4")):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the render never started writing"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 130
    finally:
        process.kill()
    assert not out.parent.exists()  # no mp4, no temporary file, and not the directory the render created
    assert "Traceback" not in process.stderr.read()


def test_render_sweeps_what_a_killed_render_left(tiny_run: Path, speech: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "renders"
    stale = _plant(out_dir, files=(f".out.mp4.{STALE}.tmp.mp4", f".depth.mp4.{STALE}.tmp.mp4"))
    user = _user_files(out_dir)
    main(["render", str(tiny_run), "--audio", str(speech), "-o", str(out_dir / "out.mp4"), "--device", "cpu",
          "--quiet"])
    assert not any(path.exists() for path in stale) and _unchanged(out_dir, user)
    assert sorted(path.name for path in out_dir.iterdir()) == sorted([*USER_FILES, "out.mp4"])


def test_resume_drops_the_log_rows_past_its_checkpoint_and_sweeps_stale_checkpoints(synthetic_dataset: Path,
                                                                                    tmp_path: Path) -> None:
    """A run killed after logging steps 3 and 4 but before checkpointing step 4 (and mid-save of that checkpoint,
    and mid-write of a log row): the resumed run logs each step once, in order, and leaves no temporary behind."""
    model_config, train_config = get_preset("tiny")
    train_config = dataclasses.replace(train_config, steps=6, log_every=1, checkpoint_every=2, eval_every=0,
                                       sample_every=1000)
    run = tmp_path / "run"
    train(synthetic_dataset, run, model_config, train_config, "tiny", torch.device("cpu"), progress=False,
          until_step=4)
    checkpoints = run / CHECKPOINTS
    shutil.rmtree(checkpoints / "step_0000004")
    (checkpoints / "latest").write_text("step_0000002\n")
    interrupted = {row["step"]: row["loss"] for row in read_log(run) if "loss" in row and row["step"] <= 2}
    with open(run / "log.jsonl", "a") as log:
        log.write('{"step": 5, "lo')  # the row a SIGKILL cut short
    stale = _plant(checkpoints, files=(f".latest.{STALE}.tmp",), dirs=(f".step_0000004.{STALE}.tmp",))

    train(synthetic_dataset, run, model_config, train_config, "tiny", torch.device("cpu"), resume=True,
          progress=False)
    rows = read_log(run)
    losses = [(row["step"], row["loss"]) for row in rows if "loss" in row]
    assert [step for step, _ in losses] == [1, 2, 3, 4, 5, 6]
    assert [row["step"] for row in rows] == sorted(row["step"] for row in rows)
    assert {step: loss for step, loss in losses if step <= 2} == interrupted  # the kept rows are the old ones
    assert not any(path.exists() for path in stale)
    assert sorted(path.name for path in checkpoints.iterdir()) == ["latest", "step_0000004", "step_0000006"]


def test_preprocess_sweeps_what_a_killed_preprocess_left(synthetic_clip: Path, synthetic_dataset: Path,
                                                         tmp_path: Path) -> None:
    dataset = tmp_path / "ds"
    shutil.copytree(synthetic_dataset, dataset)
    (dataset / "manifest.json").unlink()  # a killed re-run has removed it first
    stale = _plant(dataset, files=(f".frames.mp4.{STALE}.tmp.mp4",), dirs=(f".parsing.{STALE}.tmp",))
    user = _user_files(dataset)
    before = {path: path.stat().st_mtime_ns for path in dataset.rglob("*") if path.is_file()}
    api.preprocess(synthetic_clip, dataset, size=128, test_fraction=0.2, progress=False)
    assert not any(path.exists() for path in stale) and _unchanged(dataset, user)
    after = {path: path.stat().st_mtime_ns for path in dataset.rglob("*") if path.is_file()}
    assert after.keys() - before.keys() == {dataset / "manifest.json"}
    assert before.keys() - after.keys() == {stale[0], stale[1] / "model.safetensors"}
    assert all(after[path] == before[path] for path in before.keys() & after.keys())  # every stage was done already


@pytest.fixture(scope="module")
def talking_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2.4 s of a faceless 64² video with silent audio: long enough to reach the audio stage of preprocess."""
    path = tmp_path_factory.mktemp("talk") / "talk.mp4"
    with VideoWriter(path, 25.0, audio=np.zeros(38400, np.float32)) as writer:
        for index in range(60):
            writer.write(np.full((64, 64, 3), 100 + index, np.uint8))
    return path


@pytest.mark.parametrize("features, message", [("missing.npy", "audio features not found"),
                                               ("wrong_shape.npy", "have shape")])
def test_preprocess_failing_in_the_audio_stage_removes_the_directories_it_made(
        talking_video: Path, tmp_path: Path, features: str, message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "wrong_shape.npy", np.zeros((50, 3), np.float32))
    existing = tmp_path / "existing"
    user = _user_files(existing)
    for output in (tmp_path / "new" / "nested" / "ds", existing):
        with pytest.raises(SystemExit) as exit_info:
            main(["preprocess", str(talking_video), "-o", str(output), "--audio-features", str(tmp_path / features),
                  "--quiet"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "new").exists()
    assert sorted(path.name for path in existing.iterdir()) == sorted(USER_FILES) and _unchanged(existing, user)


def test_failed_evaluate_leaves_no_new_output(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The split is rendered and saved, then a later view fails (here: interrupted): no videos/ without metrics.json
    in a new directory, and an earlier evaluation's outputs in an existing one stay as they were."""
    import deltaplane.evaluation.run as run_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "observe_video", interrupted)
    earlier = tmp_path / "earlier"
    files = {"metrics.json": b'{"test/psnr": 20.0}', "report.html": b"<html></html>", "videos/dataset.mp4": b"old"}
    for name, content in files.items():
        (earlier / name).parent.mkdir(parents=True, exist_ok=True)
        (earlier / name).write_bytes(content)
    for output in (tmp_path / "new" / "eval", earlier):
        with pytest.raises(SystemExit) as exit_info:
            main(["evaluate", str(tiny_run), "-o", str(output), "--views", "dataset,front", "--identity-every",
                  "100", "--device", "cpu", "--quiet"])
        assert exit_info.value.code == 130
    assert not (tmp_path / "new").exists()
    assert sorted(str(path.relative_to(earlier)) for path in earlier.rglob("*")) == sorted([*files, "videos"])
    assert all((earlier / name).read_bytes() == content for name, content in files.items())


def test_evaluate_refuses_an_unreadable_cross_audio_before_writing(tiny_run: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "speech").mkdir()
    write_wav(tmp_path / "speech" / "a.wav", np.zeros(8000, np.float32))
    (tmp_path / "speech" / "b.wav").write_text("not audio")
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tiny_run), "-o", str(tmp_path / "eval"), "--audio", str(tmp_path / "speech"),
              "--device", "cpu", "--quiet"])
    assert exit_info.value.code == 2 and "cannot read audio" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()


def test_a_new_run_into_a_directory_without_checkpoint_starts_a_new_log(synthetic_dataset: Path,
                                                                        tmp_path: Path) -> None:
    """A run killed before its first checkpoint is started again, not resumed: its old rows go."""
    model_config, train_config = get_preset("tiny")
    train_config = dataclasses.replace(train_config, steps=1, eval_every=0, sample_every=1000)
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text(json.dumps({"step": 1, "loss": 99.0}) + "\n")
    train(synthetic_dataset, run, model_config, train_config, "tiny", torch.device("cpu"), progress=False)
    losses = [row["loss"] for row in read_log(run) if "loss" in row]
    assert len(losses) == 1 and losses != [99.0]


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_follow_the_umask(tmp_path: Path, umask: int, file_mode: int, dir_mode: int) -> None:
    """Temporary files are private while written (mkstemp: 0600), but the finished output gets the mode any other
    program's output would get under the user's umask (issue 12, item 8)."""
    previous = os.umask(umask)
    try:
        with atomic_path(tmp_path / "out.json") as tmp:
            tmp.write_text("{}")
        with atomic_dir(tmp_path / "checkpoint") as tmp:
            (tmp / "meta.json").write_text("{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "checkpoint").stat().st_mode & 0o777 == dir_mode
