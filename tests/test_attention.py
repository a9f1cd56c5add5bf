"""Per-token attention maps of the deltaplane predictor: shapes, normalisation, the sheet and the export."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import torch

from deltaplane.attention import TILE, attention_maps, attention_sheet, export_attention
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.presets import get_preset
from deltaplane.structs import Conditions


def _model_and_conditions(frames: int) -> tuple[TriplaneTalker, Conditions]:
    torch.manual_seed(0)
    config, _ = get_preset("tiny")
    model = TriplaneTalker(dataclasses.replace(config, audio=dataclasses.replace(config.audio, feature_dim=80))).eval()
    generator = torch.Generator().manual_seed(1)
    conditions = Conditions(audio=torch.randn(frames, 8, 16, 80, generator=generator),
                            eye=torch.rand(frames, generator=generator),
                            angles=torch.randn(frames, 3, generator=generator) * 0.2,
                            landmarks=torch.rand(frames, 6, generator=generator) * 2 - 1)
    return model, conditions


def test_maps_are_per_plane_grids_that_sum_to_one_over_the_tokens() -> None:
    model, conditions = _model_and_conditions(5)
    maps = attention_maps(model, conditions, batch_size=2)
    grid, layers = model.config.deltaplane.grid_resolution, model.config.deltaplane.num_layers
    assert maps.shape == (5, layers, 3, grid, grid, 5)
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))
    # the audio changes the audio token's key, so the maps move with it
    other = dataclasses.replace(conditions, audio=conditions.audio.flip(0))
    assert not torch.allclose(attention_maps(model, other)[0], maps[0])


def test_sheet_and_export(tmp_path: Path) -> None:
    model, conditions = _model_and_conditions(6)
    sheet = attention_sheet(attention_maps(model, conditions)[0])
    assert sheet.dtype == np.uint8 and sheet.shape[0] > 3 * TILE and sheet.shape[1] > 5 * TILE
    paths = export_attention(model, conditions, [0, 4], tmp_path / "attention")
    assert [p.name for p in paths] == ["attention_000000.png", "attention_000004.png"]
    assert cv2.imread(str(paths[1])).shape == sheet.shape
    with np.load(tmp_path / "attention" / "attention.npz") as saved:
        assert saved["maps"].shape[0] == 2 and saved["frames"].tolist() == [0, 4]
        assert saved["tokens"].tolist() == ["audio", "eye", "null", "angles", "landmarks"]
