"""A dataset passes as complete only when every artefact comes from the same preprocessing run (issue 12, item 3):
an interrupted re-run into an existing dataset leaves an incomplete one that every reader refuses."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from deltaplane import api
from deltaplane.data.dataset import load_clip
from deltaplane.data.schema import read_manifest
from deltaplane.errors import InputError
from deltaplane.preprocess import stages


class Killed(Exception):
    """Stands in for `kill -9` between two stages."""


@pytest.fixture(scope="module")
def shorter_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another subject, 2.4 s long (60 frames against the synthetic dataset's 100)."""
    from deltaplane.synthetic import SyntheticSubjectConfig, write_synthetic_clip

    path = tmp_path_factory.mktemp("shorter") / "subject.mp4"
    return write_synthetic_clip(path, SyntheticSubjectConfig(seconds=2.4, seed=1))


def test_interrupted_rerun_into_a_dataset_is_refused_until_finished(synthetic_dataset: Path, shorter_clip: Path,
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = tmp_path / "ds"
    shutil.copytree(synthetic_dataset, dataset)
    old_frames = read_manifest(dataset).num_frames

    def killed(*args: object, **kwargs: object) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(stages, "_write_frames", killed)  # dies after the sync stage rewrote the audio
        with pytest.raises(Killed):
            api.preprocess(shorter_clip, dataset, size=128, test_fraction=0.2, progress=False)
    new_frames = np.load(dataset / "audio_features.npy").shape[0]
    assert new_frames != old_frames  # the new audio now sits beside the old frames and tracks
    for read in (read_manifest, lambda path: load_clip(path, "train")):
        with pytest.raises(InputError, match="incomplete dataset .*re-run `deltaplane preprocess`"):
            read(dataset)

    api.preprocess(shorter_clip, dataset, size=128, test_fraction=0.2, progress=False)
    manifest, clip = load_clip(dataset, "all")
    assert manifest.num_frames == new_frames == len(clip) == np.load(dataset / "tracks.npz")["angles"].shape[0]


def test_a_directory_that_never_was_a_dataset_says_so(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a complete dataset .*run `deltaplane preprocess` first"):
        read_manifest(tmp_path)
