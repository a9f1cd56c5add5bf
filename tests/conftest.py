"""Shared fixtures: the real clips in ../shared/data (skipped when absent) and temporary homes for caches."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real clips and audio; tests that need it skip on a fresh clone."""
    if not (SHARED_DATA / "clips").is_dir():
        pytest.skip(f"real test clips not found at {SHARED_DATA} (only present in the development workplace)")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """matplotlib (imported by mediapipe) and torch write caches into $HOME; keep them out of it."""
    home = tmp_path_factory.mktemp("cache-home")
    os.environ.setdefault("MPLCONFIGDIR", str(home / "matplotlib"))
    os.environ.setdefault("TORCH_HOME", str(home / "torch"))


@pytest.fixture(scope="session")
def clip_excerpt(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """`clip_excerpt(name, seconds)`: the first seconds of a real clip, re-encoded at its own size and frame
    rate (cached per session), to keep the real-data tests fast."""
    from deltaplane.audio.io import load_audio
    from deltaplane.media.video import VideoWriter, iter_frames, probe_video

    cache: dict[tuple[str, float], Path] = {}

    def make(name: str, seconds: float) -> Path:
        if (name, seconds) not in cache:
            source = shared_data / "clips" / name
            info = probe_video(source)
            target = tmp_path_factory.mktemp("excerpt") / f"{Path(name).stem}_{seconds:g}s.mp4"
            audio = load_audio(source)[: int(seconds * 16000)] if info.has_audio else None
            with VideoWriter(target, info.fps, audio=audio) as writer:
                for index, frame in enumerate(iter_frames(source, info.fps)):
                    if index >= round(seconds * info.fps):
                        break
                    writer.write(frame)
            cache[(name, seconds)] = target
        return cache[(name, seconds)]

    return make


@pytest.fixture(scope="session")
def synthetic_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s synthetic talking subject (always available: the project generates it)."""
    from deltaplane.synthetic import SyntheticSubjectConfig, write_synthetic_clip

    path = tmp_path_factory.mktemp("synthetic") / "subject.mp4"
    return write_synthetic_clip(path, SyntheticSubjectConfig(seconds=4.0))


@pytest.fixture(scope="session")
def synthetic_dataset(synthetic_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic clip preprocessed at 128² (the tiny preset's output size) with the real pipeline."""
    from deltaplane import api

    return api.preprocess(synthetic_clip, tmp_path_factory.mktemp("synthetic-ds") / "ds", size=128,
                          test_fraction=0.2, progress=False)


@pytest.fixture(scope="session")
def tiny_run(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-preset run trained for 2 steps on CPU on the synthetic dataset (rendering, bench and evaluation)."""
    import dataclasses

    import torch

    from deltaplane.presets import get_preset
    from deltaplane.training.trainer import train

    model_config, train_config = get_preset("tiny")
    train_config = dataclasses.replace(train_config, steps=2, eval_every=0, sample_every=1000)
    run_dir = tmp_path_factory.mktemp("tiny-run") / "run"
    train(synthetic_dataset, run_dir, model_config, train_config, "tiny", torch.device("cpu"), progress=False)
    return run_dir


@pytest.fixture
def triton_device() -> torch.device:
    """CUDA, or the CPU under Triton's interpreter (`TRITON_INTERPRET=1`); otherwise the test is skipped."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("needs Triton")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get("TRITON_INTERPRET") == "1":
        return torch.device("cpu")
    pytest.skip("needs CUDA (or TRITON_INTERPRET=1 to run the kernel on the CPU)")
