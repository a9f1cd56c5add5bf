"""Training on the synthetic subject: held-out PSNR rises, checkpoints round-trip, resume is exact."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from deltaplane.checkpoint import latest_checkpoint, load_checkpoint
from deltaplane.data.dataset import load_clip
from deltaplane.errors import InputError
from deltaplane.inference import load_run
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.presets import get_preset
from deltaplane.training.evaluation import evaluate_clip
from deltaplane.training.logging import read_log
from deltaplane.training.registration import RegistrationConfig
from deltaplane.training.trainer import _param_groups, train
from deltaplane.training.windows import WindowConfig

CPU = torch.device("cpu")


def _tiny(steps: int, **overrides):
    model_config, train_config = get_preset("tiny")
    return model_config, dataclasses.replace(train_config, steps=steps, **overrides)


def test_tiny_training_raises_held_out_psnr(synthetic_dataset: Path, tmp_path: Path) -> None:
    model_config, train_config = _tiny(160, eval_every=40, checkpoint_every=1000, sample_every=1000)
    train(synthetic_dataset, tmp_path / "run", model_config, train_config, "tiny", CPU, progress=False)
    evals = [r["test/psnr"] for r in read_log(tmp_path / "run") if "test/psnr" in r]
    assert len(evals) >= 4
    assert evals[-1] > 17.0, evals  # a fixed floor for the 128² synthetic subject
    assert evals[-1] > evals[0] + 2.0, evals  # and it improved over training
    depth_errors = [r["test/face_depth_error"] for r in read_log(tmp_path / "run") if "test/psnr" in r]
    assert depth_errors[-1] < depth_errors[0], depth_errors  # the face-mesh prior shapes the geometry
    assert (tmp_path / "run" / "samples").is_dir()
    assert not any("guard/rollback_to" in r for r in read_log(tmp_path / "run"))  # a healthy run: no false alarm


def test_checkpoint_round_trip_gives_identical_renders(synthetic_dataset: Path, tmp_path: Path) -> None:
    model_config, train_config = _tiny(3)
    run_dir = tmp_path / "run"
    train(synthetic_dataset, run_dir, model_config, train_config, "tiny", CPU, progress=False)
    model, _, _ = load_run(run_dir, CPU)
    _, clip = load_clip(synthetic_dataset, "test", size=model.config.output_resolution)
    positions = torch.tensor([0, len(clip) - 1])
    first = evaluate_clip(model, clip, positions)
    again, _, _ = load_run(run_dir, CPU)
    assert evaluate_clip(again, clip, positions) == first


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_resume_continues_the_same_loss_curve(synthetic_dataset: Path, tmp_path: Path, device: str) -> None:
    """On CUDA the optimizer is fused and keeps its step counts on the device, where the resumed ones must go too;
    its bf16 kernels are not bitwise deterministic (atomic adds), hence the looser tolerance there."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model_config, straight = _tiny(6, log_every=1, checkpoint_every=3, eval_every=0, sample_every=1000)
    where = torch.device(device)
    train(synthetic_dataset, tmp_path / "a", model_config, straight, "tiny", where, progress=False)
    train(synthetic_dataset, tmp_path / "b", model_config, straight, "tiny", where, progress=False, until_step=3)
    train(synthetic_dataset, tmp_path / "b", model_config, straight, "tiny", where, resume=True, progress=False)
    losses = {run: [r["loss"] for r in read_log(tmp_path / run) if "loss" in r] for run in ("a", "b")}
    assert len(losses["a"]) == 6 and len(losses["b"]) == 6
    tolerance = {"rtol": 1e-5, "atol": 1e-6} if device == "cpu" else {"rtol": 1e-2, "atol": 1e-3}
    torch.testing.assert_close(torch.tensor(losses["b"]), torch.tensor(losses["a"]), **tolerance)
    assert latest_checkpoint(tmp_path / "b").name == "step_0000006"


def test_fixed_samples_take_over_at_their_share_of_the_training(synthetic_dataset: Path, tmp_path: Path) -> None:
    """`TrainConfig.fixed_samples_from` 0.5: the first half of the steps is the random-sample run's, the second half
    is not; a resume in the middle switches as the straight run does, and the run config keeps the jitter."""
    model_config, random = _tiny(6, log_every=1, checkpoint_every=3, eval_every=0, sample_every=1000)
    fixed = dataclasses.replace(random, fixed_samples_from=0.5)
    train(synthetic_dataset, tmp_path / "random", model_config, random, "tiny", CPU, progress=False)
    train(synthetic_dataset, tmp_path / "fixed", model_config, fixed, "tiny", CPU, progress=False)
    train(synthetic_dataset, tmp_path / "resumed", model_config, fixed, "tiny", CPU, progress=False, until_step=3)
    train(synthetic_dataset, tmp_path / "resumed", model_config, fixed, "tiny", CPU, resume=True, progress=False)
    losses = {run: torch.tensor([r["loss"] for r in read_log(tmp_path / run) if "loss" in r])
              for run in ("random", "fixed", "resumed")}
    torch.testing.assert_close(losses["fixed"][:3], losses["random"][:3], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(losses["fixed"][3:], losses["random"][3:])
    torch.testing.assert_close(losses["resumed"], losses["fixed"], rtol=1e-5, atol=1e-6)
    model, _, _ = load_run(tmp_path / "fixed", CPU)
    assert model.config.volume.jitter


def test_a_torso_of_its_own_trains_with_every_term_and_renders(synthetic_dataset: Path, tmp_path: Path) -> None:
    """`torso_follow` with the `fast` preset's loss terms (the pseudo multi-view, solid and behind terms sample the
    field too): a few steps train its planes, and the run renders through `render_clip`."""
    model_config, train_config = _tiny(3, eval_every=0, sample_every=1000)
    fast, _ = get_preset("fast")
    model_config = dataclasses.replace(model_config, loss=fast.loss, torso_follow=(0.1, 0.6))
    train(synthetic_dataset, tmp_path / "run", model_config, train_config, "tiny", CPU, progress=False)
    model, _, _ = load_run(tmp_path / "run", CPU)
    assert model.torso_planes.shape == model.identity_planes.shape
    _, clip = load_clip(synthetic_dataset, "test", size=model.config.output_resolution)
    scores = evaluate_clip(model, clip, torch.tensor([0, len(clip) - 1]))
    assert all(math.isfinite(value) for value in scores.values())


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile's CPU code needs a C++ compiler")
def test_compiled_training_follows_the_eager_loss_curve(synthetic_dataset: Path, tmp_path: Path) -> None:
    """`TrainConfig.compile` with the `fast` preset's loss terms and lip vector, scheduled sampling and registration
    shifts (their sparse gradient stays outside the compiled step): the same losses, discriminator losses and shifts
    as the eager run, step by step, so the compiled step is the eager step's function with its random draws. One
    graph for the step (shifts from the first step), ~3 minutes of compilation on a cold cache."""
    model_config, eager = _tiny(4, log_every=1, checkpoint_every=1000, eval_every=0, sample_every=1000,
                                lip_sampling=0.5, registration=RegistrationConfig(max_shift=1.0, start=0))
    fast, _ = get_preset("fast")
    model_config = dataclasses.replace(model_config, loss=fast.loss, audio_token="lips",
                                       lips=dataclasses.replace(model_config.lips, snap=1.0, teacher_snap=1.0))
    for run, config in (("eager", eager), ("compiled", dataclasses.replace(eager, compile=True))):
        train(synthetic_dataset, tmp_path / run, model_config, config, "tiny", CPU, progress=False)
    # the shifts' Adam steps are lr·m/(√v + 1e-8): where the near-flat early renders leave a frame's gradient tiny,
    # a rounding difference moves its step, hence their looser tolerance (their RMS is about 0.01 px here: steadily
    # aligned frames give the shifts little to learn, and 0.002 px is far below anything a render shows)
    for key, tolerance, floor in (("loss", 1e-3, 1e-4), ("loss/discriminator", 1e-3, 1e-4),
                                  ("registration/rms_x", 5e-2, 2e-3)):
        values = {run: torch.tensor([r[key] for r in read_log(tmp_path / run) if key in r])
                  for run in ("eager", "compiled")}
        assert len(values["compiled"]) == 4
        torch.testing.assert_close(values["compiled"], values["eager"], rtol=tolerance, atol=floor)
    assert values["compiled"][-1] > 0  # the shifts moved


def test_existing_run_is_not_overwritten(synthetic_dataset: Path, tmp_path: Path) -> None:
    model_config, train_config = _tiny(1)
    train(synthetic_dataset, tmp_path / "run", model_config, train_config, "tiny", CPU, progress=False)
    with pytest.raises(InputError, match="--resume"):
        train(synthetic_dataset, tmp_path / "run", model_config, train_config, "tiny", CPU, progress=False)


def test_corrupt_checkpoint_is_reported(synthetic_dataset: Path, tmp_path: Path) -> None:
    model_config, train_config = _tiny(1)
    train(synthetic_dataset, tmp_path / "run", model_config, train_config, "tiny", CPU, progress=False)
    weights = latest_checkpoint(tmp_path / "run") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(InputError, match="corrupt"):
        load_run(tmp_path / "run", CPU)


def test_adam_starts_the_predictor_afresh_after_the_warm_up(synthetic_dataset: Path, tmp_path: Path) -> None:
    """Adam counts only the steps a group trained: a step count that ran on through the warm-up (zero gradients
    behind the deltaplane's zero output layer) would spend the bias correction and inflate the first updates."""
    model_config, train_config = _tiny(4, warmup_delta_steps=3, eval_every=0, sample_every=1000)
    train(synthetic_dataset, tmp_path / "run", model_config, train_config, "tiny", CPU, progress=False)
    state = load_checkpoint(latest_checkpoint(tmp_path / "run")).training_state
    steps = {key[len("optim."):-len(".step")]: int(value) for key, value in state.items() if key.endswith(".step")}
    predictor = {name for name in steps if name.startswith(("predictor.", "condition_encoder."))}
    assert predictor and {steps[name] for name in predictor} == {1}
    assert steps["identity_planes"] == 4


@pytest.mark.parametrize("extra", [{}, {"mouth_planes": 2, "audio_token": "lips"}, {"torso_follow": (0.1, 0.6)}])
def test_every_parameter_is_optimised_exactly_once(extra: dict) -> None:
    config, train_config = get_preset("tiny")
    model = TriplaneTalker(dataclasses.replace(config, **extra))
    grouped = [id(p) for group in _param_groups(model, train_config) for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())


def test_a_dataset_older_than_the_sync_check_gets_a_warning(synthetic_dataset: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    dataset = tmp_path / "old"
    shutil.copytree(synthetic_dataset, dataset)
    manifest = json.loads((dataset / "manifest.json").read_text())
    del manifest["stages"]["sync"]  # as written before preprocess measured the audio-video offset
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    model_config, train_config = _tiny(1)
    with caplog.at_level("WARNING", logger="deltaplane.training.trainer"):
        train(dataset, tmp_path / "run", model_config, train_config, "tiny", CPU, progress=False)
    assert "re-run `deltaplane preprocess`" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="deltaplane.training.trainer"):
        train(synthetic_dataset, tmp_path / "new", model_config, train_config, "tiny", CPU, progress=False)
    assert "preprocess" not in caplog.text


@pytest.mark.parametrize("window", [None, WindowConfig(64)], ids=["whole", "windows"])
def test_fast_preset_terms_train_under_bf16_autocast(synthetic_dataset: Path, tmp_path: Path,
                                                     window: WindowConfig | None) -> None:
    """The trainer's CUDA default (bf16 autocast) run on the CPU with every term of the `fast` preset and a torso
    at tiny sizes, on whole frames and through training windows: a dtype that autocast changes and an op then
    refuses, or a term that a window's shapes break, fails here rather than only on a GPU."""
    tiny, _ = get_preset("tiny")
    fast, fast_train = get_preset("fast")
    model_config = dataclasses.replace(fast, plane_resolution=tiny.plane_resolution,
                                       render_resolution=tiny.render_resolution, volume=tiny.volume,
                                       superres=tiny.superres, deltaplane=tiny.deltaplane, torso_follow=(0.5, 0.5))
    # the preset's lip prefit, shortened and without the minimum gain (the 4-s clip has no calibration block to
    # show one), and its adversarial term from a quarter into the run: step 1 of 3
    train_config = dataclasses.replace(fast_train, steps=3, batch_size=2, eval_every=0, checkpoint_every=1000,
                                       sample_every=1000, log_every=1, precision="bf16-mixed", lip_prefit_steps=100,
                                       lip_prefit_min_gain=0.0, window=window,
                                       speaker_augment=dataclasses.replace(fast_train.speaker_augment, copies=1))
    train(synthetic_dataset, tmp_path / "run", model_config, train_config, "fast", CPU, progress=False)
    records = [r for r in read_log(tmp_path / "run") if "loss" in r]
    losses = [r["loss"] for r in records]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses), losses
    assert ["loss/adversarial" in r for r in records] == [False, True, True]
    assert ["loss/feature_match" in r for r in records] == [False, True, True]
    assert next(r for r in read_log(tmp_path / "run") if "lip_prefit/steps" in r)["lip_prefit/steps"] == 100
