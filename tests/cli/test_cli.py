"""The console script: every subcommand has --help, user errors exit 2 with one line, and a CPU smoke run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deltaplane.cli import build_parser, main

SUBCOMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: deltaplane " + command in capsys.readouterr().out


def test_user_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "deltaplane.cli", "preprocess", str(tmp_path / "missing.mp4"),
                             "-o", str(tmp_path / "ds")], capture_output=True, text=True)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.mp4" in lines[0]


def test_importing_the_package_loads_no_heavy_backends() -> None:
    code = ("import sys, deltaplane, deltaplane.cli; "
            "heavy = [m for m in ('mediapipe', 'dlib', 'av', 'torch', 'cv2') if m in sys.modules]; print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
