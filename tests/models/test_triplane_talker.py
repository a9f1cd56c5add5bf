"""The tiny triplane talker: shapes, identity at init, gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from deltaplane.geometry.cameras import orbit_cameras
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.presets import get_preset
from deltaplane.structs import Conditions


@pytest.fixture()
def model() -> TriplaneTalker:
    torch.manual_seed(0)
    config, _ = get_preset("tiny")
    return TriplaneTalker(dataclasses.replace(config, audio=dataclasses.replace(config.audio, feature_dim=80)))


def _conditions(batch: int, seed: int) -> Conditions:
    generator = torch.Generator().manual_seed(seed)
    return Conditions(audio=torch.randn(batch, 8, 16, 80, generator=generator), eye=torch.rand(batch, generator=generator),
                      angles=torch.randn(batch, 3, generator=generator) * 0.2,
                      landmarks=torch.rand(batch, 6, generator=generator) * 2 - 1)


def test_shapes_and_zero_deltaplane_at_init(model: TriplaneTalker) -> None:
    cameras = orbit_cameras(torch.tensor([0.0, 0.3]), torch.tensor([0.0, -0.2]), 128, 128)
    output, delta = model(cameras, _conditions(2, 0), generator=torch.Generator().manual_seed(1))
    assert output.rgb.shape == (2, 3, 128, 128) and output.rgb_raw.shape == (2, 3, 32, 32)
    assert output.depth.shape == output.accumulation.shape == (2, 1, 32, 32)
    assert torch.count_nonzero(delta) == 0
    # With a zero deltaplane the render cannot depend on the audio.
    other, _ = model(cameras, _conditions(2, 5), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(other.rgb, output.rgb)
    near, far = model.config.volume.near, model.config.volume.far
    assert (output.depth >= near - 1e-4).all() and (output.depth <= far + 0.05).all()


def test_every_part_gets_gradients_after_a_step(model: TriplaneTalker) -> None:
    cameras = orbit_cameras(torch.zeros(2), torch.zeros(2), 128, 128)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        output, _ = model(cameras, _conditions(2, 0))
        loss = (output.rgb - 0.3).abs().mean() + (output.rgb_raw + 0.2).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name in ("identity_planes", "predictor", "audio_encoder", "condition_encoder", "field", "superres"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name)]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
        assert all(g is None or torch.isfinite(g).all() for g in grads), name
