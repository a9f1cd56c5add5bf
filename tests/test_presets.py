"""Every preset's model is one that a run directory can hold: its config passes the run-directory check, which builds
the model on the meta device (the `fast` preset's mouth planes once failed there, so that no run of it loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deltaplane.checkpoint import read_run_config, write_run_config
from deltaplane.config_io import from_dict, to_dict
from deltaplane.models.triplane_talker import TriplaneTalkerConfig
from deltaplane.presets import PRESETS, get_preset


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_passes_the_run_directory_check(name: str, tmp_path: Path) -> None:
    model_config, _ = get_preset(name)
    write_run_config(tmp_path, {"model": to_dict(model_config)})
    assert from_dict(TriplaneTalkerConfig, read_run_config(tmp_path)["model"]) == model_config


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_super_resolves_its_own_rendering(name: str) -> None:
    """The super-resolution's input is the rendering itself (no resize in between), and `fast` and `full` make 512²
    frames: `fast` from a 256² rendering with one ×2 block (BENCHMARKS.md run 12), `full` from 128² with two."""
    model_config, _ = get_preset(name)
    assert model_config.superres.input_resolution == model_config.render_resolution
    if name != "tiny":
        assert model_config.output_resolution == 512
    if name == "fast":
        assert (model_config.render_resolution, model_config.superres.upsamplings) == (256, 1)
        window = get_preset(name)[1].window  # its training windows are whole pixels of the rendering, inside 512²
        assert window is not None and window.size < 512 and window.size % model_config.superres.scale == 0
