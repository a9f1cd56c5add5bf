"""The optional lip-sync expert loss during training (random-weight expert in the official file format)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from deltaplane.api import whole_frames_for_sync
from deltaplane.metrics.syncnet import Wav2LipSyncNet, load_wav2lip_syncnet
from deltaplane.presets import get_preset
from deltaplane.training.logging import read_log
from deltaplane.training.sync import crop_faces
from deltaplane.training.trainer import train
from deltaplane.training.windows import WindowConfig


def test_crop_faces_picks_the_box() -> None:
    image = torch.zeros(1, 3, 64, 64)
    image[:, :, 16:32, 8:24] = 1.0
    crop = crop_faces(image, torch.tensor([[8.0, 16.0, 24.0, 32.0]]))
    assert crop.shape == (1, 3, 96, 96) and crop[:, :, 4:-4, 4:-4].min() > 0.99


def test_training_with_the_sync_expert(synthetic_dataset: Path, tmp_path: Path) -> None:
    """The sync term is on from `sync_start_fraction` of the run (here the last 2 of 4 steps), and scores in (0, 1)."""
    torch.manual_seed(0)
    state = {"module." + name: value for name, value in Wav2LipSyncNet().state_dict().items()}
    torch.save({"state_dict": state, "global_step": 0}, tmp_path / "lipsync_expert.pth")
    expert = load_wav2lip_syncnet(tmp_path / "lipsync_expert.pth")
    model_config, train_config = get_preset("tiny")
    train_config = dataclasses.replace(train_config, steps=4, log_every=1, sync_start_fraction=0.5, eval_every=0)
    train(synthetic_dataset, tmp_path / "run", model_config, train_config, "tiny", torch.device("cpu"),
          progress=False, sync_expert=expert)
    logged = [r for r in read_log(tmp_path / "run") if "loss/sync" in r]
    assert [r["step"] for r in logged] == [3, 4] and all(0 < r["loss/sync"] < 1 for r in logged)
    with pytest.raises(ValueError, match="sync expert"):  # its mouth crops are whole frames: no training windows
        train(synthetic_dataset, tmp_path / "windowed", model_config,
              dataclasses.replace(train_config, window=WindowConfig(64)), "tiny", torch.device("cpu"),
              progress=False, sync_expert=expert)


def test_a_sync_expert_turns_the_fast_presets_windows_off() -> None:
    """The `fast` preset trains through windows, which the sync expert cannot use: `deltaplane train --syncnet`
    turns them off with a warning instead of failing."""
    _, fast = get_preset("fast")
    assert fast.window is not None
    with pytest.warns(UserWarning, match="windows are off"):
        whole = whole_frames_for_sync(fast, "fast")
    assert whole == dataclasses.replace(fast, window=None)
    _, tiny = get_preset("tiny")
    assert whole_frames_for_sync(tiny, "tiny") is tiny
