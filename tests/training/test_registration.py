"""Per-frame registration (issue 10): the Fourier shift is an exact translation, the shifts recover a known jitter,
and training with them on logs, saves and resumes them exactly."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from deltaplane.checkpoint import load_checkpoint
from deltaplane.presets import get_preset
from deltaplane.structs import RenderOutput
from deltaplane.training.logging import read_log
from deltaplane.training.registration import (SHIFTS, FrameRegistration, RegistrationConfig, fourier_shift,
                                               shift_output)
from deltaplane.training.trainer import train

CPU = torch.device("cpu")


def _waves(shifts: torch.Tensor, size: int = 32) -> torch.Tensor:
    """[B, 2, size, size]: a band-limited pattern (whole periods along each axis) translated by `shifts` (x, y),
    evaluated analytically."""
    grid = torch.arange(size, dtype=torch.float64)
    x = grid[None, None, :] - shifts[:, 0, None, None].double()
    y = grid[None, :, None] - shifts[:, 1, None, None].double()
    first = torch.cos(2 * math.pi * (3 * x + 2 * y) / size) + 0.5 * torch.sin(2 * math.pi * 7 * x / size)
    second = torch.sin(2 * math.pi * (5 * y - x) / size) + 0.3 * torch.cos(2 * math.pi * 11 * y / size)
    return torch.stack([first, second], dim=1).float()


def test_fourier_shift_is_a_translation() -> None:
    image = torch.rand(2, 3, 16, 20, generator=torch.Generator().manual_seed(0))
    whole = torch.tensor([[2.0, -3.0], [-1.0, 5.0]])
    rolled = torch.stack([torch.roll(image[k], (int(whole[k, 1]), int(whole[k, 0])), dims=(1, 2)) for k in range(2)])
    torch.testing.assert_close(fourier_shift(image, whole), rolled, atol=1e-5, rtol=0)
    fractional = torch.tensor([[0.3, -1.7], [1.25, 0.5]])
    torch.testing.assert_close(fourier_shift(_waves(torch.zeros(2, 2)), fractional), _waves(fractional),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(fourier_shift(fourier_shift(_waves(torch.zeros(2, 2)), fractional), -fractional),
                               _waves(torch.zeros(2, 2)), atol=1e-4, rtol=0)


def test_the_shifts_recover_a_known_jitter() -> None:
    """Frames that are one picture jittered by known sub-pixel shifts: registering that picture to them by L1 finds
    the shifts (their mean is the gauge, held at 0)."""
    generator = torch.Generator().manual_seed(1)
    truth = (torch.rand(12, 2, generator=generator) * 2 - 1) * 1.2
    truth -= truth.mean(0)
    frames = _waves(truth)
    picture = _waves(torch.zeros(1, 2))
    registration = FrameRegistration(RegistrationConfig(max_shift=2.0, lr=0.05, start=0), len(truth), CPU)
    for _ in range(300):
        positions = torch.randint(len(truth), (4,), generator=generator)
        rendered = picture.expand(len(positions), -1, -1, -1)
        output = RenderOutput(rgb=rendered, rgb_raw=rendered[..., ::2, ::2], depth=rendered[:, :1],
                              accumulation=rendered[:, :1], depth_spread=rendered[:, :1])
        moved = shift_output(output, registration.lookup(positions))
        (moved.rgb - frames[positions]).abs().mean().backward()
        registration.step()
    torch.testing.assert_close(registration.shifts.detach(), truth, atol=0.1, rtol=0)  # Adam keeps moving ~lr
    assert registration.shifts.detach().mean(0).abs().max() < 1e-6


def _run(steps: int, max_shift: float):
    model_config, train_config = get_preset("tiny")
    return model_config, dataclasses.replace(train_config, steps=steps, log_every=1, checkpoint_every=2,
                                             eval_every=0, eval_frames=1, sample_every=1000,
                                             registration=RegistrationConfig(max_shift=max_shift, start=1))


def test_training_with_shifts_logs_saves_and_resumes(synthetic_dataset: Path, tmp_path: Path) -> None:
    train(synthetic_dataset, tmp_path / "a", *_run(4, 1.5), "tiny", CPU, progress=False)
    train(synthetic_dataset, tmp_path / "b", *_run(4, 1.5), "tiny", CPU, progress=False, until_step=2)
    train(synthetic_dataset, tmp_path / "b", *_run(4, 1.5), "tiny", CPU, resume=True, progress=False)
    rows = {run: [r for r in read_log(tmp_path / run) if "loss" in r] for run in ("a", "b")}
    assert rows["a"][-1]["registration/rms_x"] > 0  # the renders moved from `start` on
    for key in ("loss", "registration/rms_x", "registration/rms_y"):
        assert [r[key] for r in rows["b"]] == [r[key] for r in rows["a"]], key
    straight, resumed = (load_checkpoint(tmp_path / run / "checkpoints" / "step_0000004").training_state
                         for run in ("a", "b"))
    saved = [name for name in straight if SHIFTS in name]
    assert SHIFTS in saved and any("exp_avg" in name for name in saved)
    for name in saved:
        assert torch.equal(resumed[name], straight[name]), name
    shifts = straight[SHIFTS]
    assert shifts.abs().max() <= 1.5 and shifts.mean(0).abs().max() < 1e-6


def test_no_shifts_when_off(synthetic_dataset: Path, tmp_path: Path) -> None:
    train(synthetic_dataset, tmp_path / "off", *_run(2, 0.0), "tiny", CPU, progress=False)
    state = load_checkpoint(tmp_path / "off" / "checkpoints" / "step_0000002").training_state
    assert not [name for name in state if SHIFTS in name]
    assert not [key for row in read_log(tmp_path / "off") for key in row if key.startswith("registration/")]
