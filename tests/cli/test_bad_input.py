"""Bad numbers and unreadable inputs: each is one `error:` line, exit status 2, no traceback, and nothing is left
behind (issue 12, items 2 and 4; the rest of that issue's table is still open)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deltaplane.cli import main
from deltaplane.media.video import VideoWriter

MISSING_RUN = "run_that_does_not_exist"


def _small_video(path: Path) -> Path:
    with VideoWriter(path, 25.0) as writer:
        for index in range(10):
            writer.write(np.full((64, 64, 3), 20 * index, np.uint8))
    return path


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "text.txt").write_text("not a video")
    (tmp_path / "empty.mp4").write_bytes(b"")
    video = _small_video(tmp_path / "ok.mp4")
    (tmp_path / "truncated.mp4").write_bytes(video.read_bytes()[:300])
    from deltaplane.audio.io import write_wav

    write_wav(tmp_path / "speech.wav", np.zeros(16000, np.float32))
    return {name: str(tmp_path / name) for name in ("text.txt", "empty.mp4", "ok.mp4", "truncated.mp4", "speech.wav")}


CASES = [
    ("train --steps 0", ["train", "DATA", "-o", "OUT", "--steps", "0"], "--steps must be at least 1"),
    ("train --steps -5", ["train", "DATA", "-o", "OUT", "--steps", "-5"], "--steps must be at least 1"),
    ("train --minutes -1", ["train", "DATA", "-o", "OUT", "--minutes", "-1"], "--minutes must be a positive"),
    ("train --minutes 0", ["train", "DATA", "-o", "OUT", "--minutes", "0"], "--minutes must be a positive"),
    ("train --device banana", ["train", "DATA", "-o", "OUT", "--device", "banana"], "unknown --device"),
    ("run --steps -1", ["run", "ok.mp4", "-o", "OUT", "--steps", "-1"], "--steps must be at least 1"),
    ("run --audio missing", ["run", "ok.mp4", "-o", "OUT", "--audio", "missing.wav"], "audio not found"),
    ("run --device banana", ["run", "ok.mp4", "-o", "OUT", "--device", "banana"], "unknown --device"),
    ("render --lip-smoothing 5", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4",
                                  "--lip-smoothing", "5"], "--lip-smoothing"),
    ("render --lip-smoothing -5", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4",
                                   "--lip-smoothing", "-5"], "--lip-smoothing"),
    ("render huge yaw", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4", "--camera",
                         "yaw=1" + "0" * 320 + ",pitch=0"], "outside the supported"),
    ("render yaw=400", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4", "--camera",
                        "yaw=400,pitch=0"], "outside the supported"),
    ("render pitch=90", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4", "--camera",
                         "yaw=0,pitch=90"], "outside the supported"),
    ("render unknown camera", ["render", MISSING_RUN, "--audio", "speech.wav", "-o", "OUT.mp4", "--camera",
                               "roll=10"], "unknown camera"),
    ("evaluate --views yaw=±90", ["evaluate", MISSING_RUN, "-o", "OUT", "--views", "yaw=±90"],
     "outside the supported"),
    ("preprocess --size 100000", ["preprocess", "ok.mp4", "-o", "OUT", "--size", "100000"], "--size must be"),
    ("detect missing", ["detect", "missing.mp4"], "video not found"),
    ("detect text file", ["detect", "text.txt"], "cannot read"),
    ("detect empty file", ["detect", "empty.mp4"], "cannot read"),
    ("detect truncated", ["detect", "truncated.mp4"], "cannot read"),
    ("detect audio only", ["detect", "speech.wav"], "cannot read"),
]


@pytest.mark.parametrize("argv, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_error_line_exit_2_and_leaves_nothing(argv: list[str], message: str, inputs: dict,
                                                               tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(path.name for path in tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--quiet"] if argv[0] not in ("detect",) else argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err
    assert sorted(path.name for path in tmp_path.iterdir()) == before  # no output, no temporary file


def test_detect_exit_status_is_1_for_a_readable_unmarked_video(inputs: dict) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", inputs["ok.mp4"]])
    assert exit_info.value.code == 1
