"""The lip regressions fitted alone before the renderer trains (`TrainConfig.lip_prefit_steps`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from deltaplane import api
from deltaplane.data.dataset import audio_context, load_clip
from deltaplane.errors import InputError
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.presets import PRESETS, get_preset
from deltaplane.training.evaluation import lip_fit
from deltaplane.training.lip_prefit import CHECK_EVERY, prefit_lips
from deltaplane.training.logging import read_log
from deltaplane.training.trainer import train

CPU = torch.device("cpu")


def _lip_config(**lips):
    """The tiny preset in lip mode with two regressions (and `lips`' changes to its `LipConfig`)."""
    model_config, train_config = get_preset("tiny")
    lips = dataclasses.replace(model_config.lips, regressions=2, **lips)
    return dataclasses.replace(model_config, audio_token="lips", lips=lips), train_config


def _fit(model: TriplaneTalker, clip, positions: torch.Tensor | None = None) -> tuple[float, float]:
    """The raw mean regression's first lip component (the mouth's opening, mostly) on `clip`'s frames (at
    `positions`; None: all): its MSE in whitened units and its correlation with the tracked one."""
    positions = torch.arange(len(clip)) if positions is None else positions
    with torch.no_grad():
        predicted = model.predicted_lips(audio_context(clip.audio_features, clip.indices[positions]),
                                         calibrated=False)
    predicted, target = predicted[:, 0], model.lips.coefficients(clip.mouth_shapes[positions])[:, 0]
    return (predicted - target).square().mean().item(), torch.corrcoef(torch.stack((predicted, target)))[0, 1].item()


def _lip_model(dataset: Path, **lips):
    """A tiny lip-mode model (`lips`: changes to its `LipConfig`) with its lip basis fitted on `dataset`'s training
    frames, and both splits' clips."""
    model_config, _ = _lip_config(**lips)
    manifest, train_clip = load_clip(dataset, "train", size=model_config.output_resolution, normalize_audio=True)
    _, test_clip = load_clip(dataset, "test", size=model_config.output_resolution, normalize_audio=True)
    audio = dataclasses.replace(model_config.audio, feature_dim=manifest.audio.dim, normalize=True)
    torch.manual_seed(0)
    model = TriplaneTalker(dataclasses.replace(model_config, audio=audio))
    model.lips.fit(train_clip.mouth_shapes)
    return model, train_clip, test_clip


def test_prefit_fits_the_regressions_and_nothing_else(synthetic_dataset: Path) -> None:
    """The regressions' error on the frames they learn from falls; every regression weight moved and no other."""
    model, train_clip, _ = _lip_model(synthetic_dataset)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    fitted = torch.nonzero(~model.lips.held_out(train_clip.indices))[:, 0]
    error_before, _ = _fit(model, train_clip, fitted)

    losses = prefit_lips(model, train_clip, steps=200, lr=2e-3, batch=32, seed=1).losses

    assert len(losses) == 200 and sum(losses[-20:]) < 0.5 * sum(losses[:20])
    assert _fit(model, train_clip, fitted)[0] < 0.5 * error_before
    regression = {id(p) for encoder, head in model.lip_regressions()
                  for p in (*encoder.parameters(), *head.parameters())}
    for name, p in model.named_parameters():
        assert (not torch.equal(p.detach(), before[name])) == (id(p) in regression), name


@pytest.fixture(scope="module")
def obama_128(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return api.preprocess(shared_data / "clips" / "obama_20s.mp4", tmp_path_factory.mktemp("obama") / "ds",
                          size=128, progress=False)


def test_prefit_regressions_follow_held_out_speech(obama_128: Path) -> None:
    """On obama_20s's test split (speech the regressions never heard) the prefit lip vector follows the tracked
    mouth's opening (when written: correlation −0.02 → 0.89, error 1.18 → 0.24)."""
    model, train_clip, test_clip = _lip_model(obama_128)
    error_before, _ = _fit(model, test_clip)
    prefit_lips(model, train_clip, steps=400, lr=2e-3, batch=32, seed=1)
    error_after, correlation = _fit(model, test_clip)
    assert correlation > 0.7
    assert error_after < 0.5 * error_before


def test_training_prefits_a_new_run_once(synthetic_dataset: Path, tmp_path: Path) -> None:
    """The trainer fits the regressions before its first step and logs it; a resumed run does not fit again."""
    model_config, train_config = _lip_config()
    config = dataclasses.replace(train_config, steps=2, eval_every=0, sample_every=1000, checkpoint_every=1,
                                 lip_prefit_steps=60)
    train(synthetic_dataset, tmp_path / "run", model_config, config, "tiny", CPU, progress=False)
    train(synthetic_dataset, tmp_path / "run", model_config, dataclasses.replace(config, steps=3), "tiny", CPU,
          resume=True, progress=False)
    rows = [r for r in read_log(tmp_path / "run") if "lip_prefit/loss_first" in r]
    assert len(rows) == 1 and rows[0]["step"] == 0
    assert rows[0]["lip_prefit/loss_last"] < rows[0]["lip_prefit/loss_first"]
    assert max(r["step"] for r in read_log(tmp_path / "run")) == 3


def test_api_train_prefits_when_asked(synthetic_dataset: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`api.train(lip_prefit=N)` (`deltaplane train --lip-prefit N`) runs the prefit on a lip-mode preset, here the
    tiny one in lip mode, registered for the test."""
    monkeypatch.setitem(PRESETS, "tiny-lips", ("the tiny preset in lip mode", _lip_config()))
    run = api.train(synthetic_dataset, tmp_path / "run", preset="tiny-lips", steps=1, device="cpu", progress=False,
                    lip_prefit=40)
    rows = [r for r in read_log(run) if "lip_prefit/loss_first" in r]
    assert len(rows) == 1 and rows[0]["lip_prefit/loss_last"] < rows[0]["lip_prefit/loss_first"]


@pytest.mark.parametrize(("preset", "steps", "message"), [("tiny", 100, "lip vector"), ("fast", -1, "number of steps")])
def test_api_train_refuses_a_prefit_it_cannot_run(synthetic_dataset: Path, tmp_path: Path, preset: str, steps: int,
                                                   message: str) -> None:
    """A prefit for a preset without a lip vector, or a negative one, is a user error before any work."""
    with pytest.raises(InputError, match=message):
        api.train(synthetic_dataset, tmp_path / "run", preset=preset, steps=1, device="cpu", progress=False,
                  lip_prefit=steps)
    assert not (tmp_path / "run").exists()


def test_prefit_with_patience_keeps_the_calibration_blocks_best(synthetic_dataset: Path) -> None:
    """With `patience` the prefit scores the calibration blocks every CHECK_EVERY steps, stops `patience` checks
    after their best, and leaves the regressions at that best's weights. A learning rate far too high makes the
    error rise after the start, so it must stop early. The synthetic clip is short: blocks of 5 frames, one in 4."""
    model, train_clip, _ = _lip_model(synthetic_dataset, calibration_block=5, calibration_every=4)
    held_out = torch.nonzero(model.lips.held_out(train_clip.indices))[:, 0]
    assert len(held_out) > 0, "the synthetic clip holds no calibration block out"

    log = prefit_lips(model, train_clip, steps=1000, lr=0.5, batch=32, seed=1, patience=2)

    steps, errors = zip(*log.held_out)
    assert steps == tuple(range(0, steps[-1] + 1, CHECK_EVERY)) and steps[0] == 0
    best = min(range(len(errors)), key=errors.__getitem__)
    assert log.kept_step == steps[best] and max(errors) > errors[best]
    assert len(log.losses) == log.kept_step + 2 * CHECK_EVERY < 1000
    assert lip_fit(model, train_clip, held_out, calibrated=False)["lip_error"] == pytest.approx(errors[best], rel=1e-6)


def test_prefit_with_patience_runs_on_while_the_blocks_improve(synthetic_dataset: Path) -> None:
    """At the usual learning rate the calibration blocks' error falls, and the prefit keeps the trained weights,
    not the untrained ones."""
    model, train_clip, _ = _lip_model(synthetic_dataset, calibration_block=5, calibration_every=4)
    log = prefit_lips(model, train_clip, steps=300, lr=2e-3, batch=32, seed=1, patience=2)
    assert log.kept_step > 0 and log.held_out[0][1] > min(error for _, error in log.held_out)


def test_prefit_without_enough_gain_is_undone(synthetic_dataset: Path) -> None:
    """With `min_gain` above what the blocks' best check gained, the prefit puts back the untrained regressions
    (every weight as before it) and says it kept step 0; a gain it reached keeps the best check's weights."""
    model, train_clip, _ = _lip_model(synthetic_dataset, calibration_block=5, calibration_every=4)
    before = [p.detach().clone() for p in model.parameters()]
    log = prefit_lips(model, train_clip, steps=300, lr=2e-3, batch=32, seed=1, patience=2, min_gain=0.99)
    assert log.kept_step == 0 and len(log.losses) > 0
    assert all(torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before))
    assert log.describe().startswith(f"lip prefit: {len(log.losses)} steps, undone: held-out lip error")

    model, train_clip, _ = _lip_model(synthetic_dataset, calibration_block=5, calibration_every=4)
    log = prefit_lips(model, train_clip, steps=300, lr=2e-3, batch=32, seed=1, patience=2, min_gain=0.01)
    (_, first), errors = log.held_out[0], dict(log.held_out)
    assert log.kept_step > 0 and errors[log.kept_step] < 0.99 * first
    assert f"kept step {log.kept_step}'s regressions (held-out lip error {first:.3f} -> " in log.describe()


def test_prefit_that_cannot_be_checked_does_not_run(synthetic_dataset: Path, tmp_path: Path) -> None:
    """With `min_gain` and no calibration block among the training frames (a clip under 10 s at the defaults: here
    none is held out), nothing could show the gain, so the prefit leaves every weight as it was and says so, and
    training logs it; without `min_gain`, or without the patience it belongs to, it runs as before."""
    model, train_clip, _ = _lip_model(synthetic_dataset, calibration_every=0)
    before = [p.detach().clone() for p in model.parameters()]
    log = prefit_lips(model, train_clip, steps=200, lr=2e-3, batch=32, seed=1, patience=2, min_gain=0.2)
    assert (log.losses, log.held_out, log.kept_step) == ([], [], 0)
    assert all(torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before))
    assert log.describe().startswith("lip prefit: skipped")
    assert len(prefit_lips(model, train_clip, steps=200, lr=2e-3, batch=32, seed=1, patience=2).losses) == 200
    # the gain is asked only of a patient prefit (`TrainConfig.lip_prefit_min_gain`): without patience it runs
    assert len(prefit_lips(model, train_clip, steps=200, lr=2e-3, batch=32, seed=1, min_gain=0.2).losses) == 200

    model_config, train_config = _lip_config(calibration_every=0)
    config = dataclasses.replace(train_config, steps=1, eval_every=0, sample_every=1000, lip_prefit_steps=200,
                                 lip_prefit_patience=2, lip_prefit_min_gain=0.2)
    train(synthetic_dataset, tmp_path / "run", model_config, config, "tiny", CPU, progress=False)
    row = next(r for r in read_log(tmp_path / "run") if "lip_prefit/steps" in r)
    assert row["lip_prefit/steps"] == 0 and "lip_prefit/loss_first" not in row


def test_training_logs_where_a_patient_prefit_stopped(synthetic_dataset: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`TrainConfig.lip_prefit_patience` reaches the prefit; the log says how many steps ran, which it kept, and the
    calibration blocks' error at the start and at the kept step, and the user reads it in one line."""
    model_config, train_config = _lip_config(calibration_block=5, calibration_every=4)
    config = dataclasses.replace(train_config, steps=1, eval_every=0, sample_every=1000, lip_prefit_steps=250,
                                 lip_prefit_patience=1)
    train(synthetic_dataset, tmp_path / "run", model_config, config, "tiny", CPU, progress=True)
    row = next(r for r in read_log(tmp_path / "run") if "lip_prefit/loss_first" in r)
    assert row["lip_prefit/kept_step"] in (0, 100, 200, 250) and row["lip_prefit/steps"] <= 250
    assert row["lip_prefit/held_out_best"] <= row["lip_prefit/held_out_kept"] <= row["lip_prefit/held_out_first"]
    assert f"lip prefit: {row['lip_prefit/steps']:.0f} steps, " in capsys.readouterr().out
