"""The lip-vector mode: mouth shape, basis, calibration, teacher forcing, per-utterance normalisation, and a tiny
training run on the synthetic subject whose mouth opening is the audio envelope."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from deltaplane.audio.features import WINDOW, normalize_utterance
from deltaplane.config_io import from_dict, to_dict
from deltaplane.data.dataset import load_clip
from deltaplane.errors import InputError
from deltaplane.fields.lips import (MAX_GAIN, NEIGHBOURS, LipConfig, LipVector, frame_spacing, pooled_spread,
                                   shape_spread, snap_to_frames)
from deltaplane.evaluation.face import mouth_opening
from deltaplane.geometry.lips import CLOSED_MOUTH, closed_share, mouth_shape, shape_opening
from deltaplane.inference import RenderOverrides, describe_rendering, load_run
from deltaplane.models.triplane_talker import TriplaneTalkerConfig
from deltaplane.presets import get_preset
from deltaplane.training.logging import read_log
from deltaplane.training.trainer import train

CPU = torch.device("cpu")


def _face(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(100, 400, size=(68, 2))


def test_mouth_shape_ignores_head_position_and_size_but_not_the_jaw() -> None:
    face = _face(np.random.default_rng(0))
    moved = face * 1.7 + np.array([30.0, -12.0])
    np.testing.assert_allclose(mouth_shape(moved), mouth_shape(face), atol=1e-5)
    opened = face.copy()
    opened[55:60, 1] += 20  # the lower lip drops
    assert np.abs(mouth_shape(opened) - mouth_shape(face)).max() > 0.01
    assert mouth_shape(np.stack([face, opened])).shape == (2, 40)


def test_shape_opening_measures_the_landmarks_opening_and_closed_share_ramps() -> None:
    """`shape_opening` of a mouth shape is `evaluation.face.mouth_opening` of its landmarks (both over the
    outer-eye-corner distance), for any leading shape; `closed_share` is 1 up to the closed opening, 0 from the open
    one, linear between."""
    rng = np.random.default_rng(3)
    faces = np.stack([_face(rng) for _ in range(6)])
    shapes = torch.from_numpy(mouth_shape(faces)).double()
    expected = torch.tensor([mouth_opening(face) for face in faces], dtype=torch.float64)
    torch.testing.assert_close(shape_opening(shapes), expected)
    assert shape_opening(shapes.view(2, 3, 40)).shape == (2, 3)
    closed, opened = CLOSED_MOUTH
    openings = torch.tensor([0.0, closed, (closed + opened) / 2, opened, 0.3])
    torch.testing.assert_close(closed_share(openings), torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0]))


def test_basis_whitens_the_training_shapes_and_round_trips() -> None:
    generator = torch.Generator().manual_seed(0)
    shapes = torch.randn(200, 3, generator=generator) @ torch.randn(3, 40, generator=generator) + 0.5
    lips = LipVector(LipConfig(dim=3), code_dim=64, token_dim=64)
    lips.fit(shapes)
    coefficients = lips.coefficients(shapes)
    torch.testing.assert_close(coefficients.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(coefficients.std(0), torch.ones(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(lips.shapes(coefficients), shapes, atol=1e-4, rtol=1e-4)  # rank 3: exact


def test_calibration_restores_the_spread_of_what_the_audio_predicts() -> None:
    lips = LipVector(LipConfig(dim=3), code_dim=8, token_dim=8)
    lips.scale.copy_(torch.tensor([2.0, 1.0, 0.5]))  # shape-space std of each whitened component
    generator = torch.Generator().manual_seed(1)
    target, noise = torch.randn(20000, 3, generator=generator), torch.randn(20000, 3, generator=generator)
    lips.calibrate(0.5 * target, target)  # shrunk but fully correlated: the whole spread back
    torch.testing.assert_close(lips.gain, torch.full((3,), 2.0), atol=0.02, rtol=0)
    lips.calibrate(0.1 * target, target)
    torch.testing.assert_close(lips.gain, torch.full((3,), MAX_GAIN))
    # half the spread, correlation 0.25: the spread back all the same (25 frames cannot measure the correlation)
    lips.calibrate(0.5 * (0.25 * target + 0.9375 ** 0.5 * noise), target)
    torch.testing.assert_close(lips.gain, torch.full((3,), 2.0), atol=0.02, rtol=0)
    lips.calibrate(0.5 * (-0.25 * target + 0.9375 ** 0.5 * noise), target)  # anti-correlated: the raw regression
    torch.testing.assert_close(lips.gain, torch.ones(3))
    # pooled in shape space: the wide first component counts 16 times the third
    predicted = target.clone()
    predicted[:, 2] = noise[:, 2]
    ratio, correlation = pooled_spread(predicted, target, lips.scale.square())
    assert abs(ratio - 1) < 0.02 and abs(correlation - 5.0 / 5.25) < 0.01
    code = torch.randn(4, 8)
    torch.testing.assert_close(lips.predict(code), lips.predict(code, calibrated=False) * lips.gain)
    assert pooled_spread(torch.ones(10, 3), target[:10], lips.scale.square())[1] == 0.0  # constant: no NaN


def test_a_driving_clip_moves_as_much_as_the_held_out_blocks() -> None:
    """`LipConfig.per_utterance`: a clip's raw lip vectors get the calibrated gain times the held-out blocks' raw
    spread over the clip's, whatever the clip's level; short clips and uncorrelated regressions keep the
    calibrated gain, and without the option nothing changes (no buffer: older checkpoints load)."""
    lips = LipVector(LipConfig(dim=3, per_utterance=True), code_dim=8, token_dim=8)
    lips.scale.copy_(torch.tensor([2.0, 1.0, 0.5]))
    target = torch.randn(2000, 3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(lips.utterance_gain(0.3 * target), lips.gain)  # not calibrated yet
    lips.calibrate(0.5 * target, target)  # gain 2 for raw vectors that swing as far as 0.5 · target
    torch.testing.assert_close(lips.gain, torch.full((3,), 2.0))
    torch.testing.assert_close(lips.utterance_gain(0.5 * target), lips.gain)
    torch.testing.assert_close(lips.utterance_gain(0.625 * target), lips.gain / 1.25)  # swings 1.25× as far
    torch.testing.assert_close(lips.utterance_gain(0.625 * target + 3.0), lips.gain / 1.25)  # about its own mean
    torch.testing.assert_close(lips.utterance_gain(0.25 * target), torch.full((3,), MAX_GAIN))
    assert torch.equal(lips.utterance_gain(0.625 * target[:lips.config.calibration_block - 1]), lips.gain)
    lips.calibrate(-0.5 * target, target)  # anti-correlated: the raw regression on every clip
    assert torch.equal(lips.utterance_gain(0.625 * target), torch.ones(3))
    plain = LipVector(LipConfig(dim=3), code_dim=8, token_dim=8)
    plain.calibrate(0.5 * target, target)
    assert torch.equal(plain.utterance_gain(0.625 * target), plain.gain)
    assert "held_out_spread" not in plain.state_dict() and "held_out_spread" in lips.state_dict()


def test_calibration_blocks_are_whole_seconds_spread_over_the_clip() -> None:
    lips = LipVector(LipConfig(dim=3, calibration_block=25, calibration_every=10), code_dim=8, token_dim=8)
    held = lips.held_out(torch.arange(1000))
    assert held.sum() == 100 and held[225:250].all() and not held[:225].any() and held[475:500].all()
    assert not LipVector(LipConfig(dim=3, calibration_every=0), 8, 8).held_out(torch.arange(1000)).any()


def test_per_utterance_normalisation_keeps_the_padding_zero() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(3.0, 2.0, size=(50, WINDOW, 5)).astype(np.float32)
    features[0, :WINDOW // 2] = 0.0  # zero padding before the clip
    normalised = normalize_utterance(features)
    centres = normalised[:, WINDOW // 2]
    np.testing.assert_allclose(centres.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(centres.std(0), 1.0, atol=1e-4)
    assert (normalised[0, :WINDOW // 2] == 0).all()
    louder = normalize_utterance(features * 3.0 + 1.0)  # another microphone gain and offset: the same input
    np.testing.assert_allclose(louder[1:], normalised[1:], atol=1e-4)


@pytest.fixture(scope="module")
def lip_run(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_config, train_config = get_preset("tiny")
    model_config = dataclasses.replace(model_config, audio_token="lips", mouth_planes=2,  # as the fast preset
                                       audio=dataclasses.replace(model_config.audio, normalize=True),
                                       lips=dataclasses.replace(model_config.lips, snap=1.0, regressions=2,
                                                                per_utterance=True))
    train_config = dataclasses.replace(train_config, steps=120, eval_every=40, checkpoint_every=1000,
                                       sample_every=1000, lr_audio=2e-3)
    run_dir = tmp_path_factory.mktemp("lip-run") / "run"
    train(synthetic_dataset, run_dir, model_config, train_config, "tiny", CPU, progress=False)
    return run_dir


def test_tiny_lip_run_learns_the_mouth_from_audio(lip_run: Path) -> None:
    evals = [record for record in read_log(lip_run) if "test/lip_correlation" in record]
    assert len(evals) == 3
    # The synthetic subject opens its mouth with the speech envelope: the audio predicts the main lip component on
    # held-out frames, and the rendered mouth region moves more as training goes on.
    assert evals[-1]["test/lip_correlation"] > 0.7, evals
    assert evals[-1]["test/mouth_pixel_std_ratio"] > evals[0]["test/mouth_pixel_std_ratio"], evals
    assert "loss/lips" in next(record for record in read_log(lip_run) if "loss" in record)


def test_lip_run_reloads_with_its_basis_and_gain(lip_run: Path) -> None:
    model, config, _ = load_run(lip_run, CPU)
    assert config["model"]["audio_token"] == "lips" and model.lips is not None
    assert (model.lips.gain >= 0.0).all() and (model.lips.gain <= MAX_GAIN).all()
    assert not torch.equal(model.lips.components, torch.eye(*model.lips.components.shape))  # fitted, not the init
    # The mouth planes (stored inside the mouth box, whose rectangles the checkpoint check derives from the config
    # on the meta device) come back trained.
    assert len(model.mouth_planes) == 3 and all(plane.abs().sum() > 0 for plane in model.mouth_planes)
    audio = torch.randn(3, 8, 16, model.config.audio.feature_dim)
    tokens = model.tokens(dataclasses.replace(_conditions(3), audio=audio))
    torch.testing.assert_close(tokens[:, 0], model.lips(model.predicted_lips(audio)))
    # A whole driving clip is driven with its own gain, however it is chunked; a clip shorter than a calibration
    # block with the calibrated one.
    assert model.lips.held_out_spread > 0
    clip = torch.randn(40, 8, 16, model.config.audio.feature_dim)
    with torch.no_grad():
        codes = model.clip_audio_codes(clip)
        torch.testing.assert_close(model.clip_audio_codes(clip, chunk=16), codes)
        raw = model.predicted_lips(clip, calibrated=False)
        torch.testing.assert_close(codes, model.lips(model.lips.calibrated(raw, model.lips.utterance_gain(raw))))
        assert not torch.equal(model.lips.utterance_gain(raw), model.lips.gain)
        torch.testing.assert_close(model.clip_audio_codes(audio), model.audio_codes(audio))
    # The snap's bank of training mouths comes back: every training frame (fewer than `bank_size`), and the lip
    # vectors of random audio land among them.
    _, train_clip = load_clip(Path(config["dataset"]), "train", size=32)
    assert int(model.lips.bank_valid.sum()) == len(train_clip)
    torch.testing.assert_close(model.lips.bank[:len(train_clip)],
                               model.lips.coefficients(train_clip.mouth_shapes), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        lips = model.predicted_lips(audio)
    frames = model.lips.bank[model.lips.bank_valid] * model.lips.scale
    assert torch.cdist(lips * model.lips.scale, frames).amin(1).max() < 2 * model.lips.bandwidth


def test_mouth_scale_moves_the_driving_mouth_further(lip_run: Path) -> None:
    """`render --mouth-scale F` (`RenderOverrides`, `LipConfig.mouth_scale`): the same weights drive a clip with F
    times its own gain, then the training range and the snap: the snapped lip vectors spread wider for F > 1 and
    narrower for F < 1, and every one stays among the training frames' mouths. Bad factors and runs without a lip
    vector are refused by name."""
    clip = torch.randn(60, 8, 16, 80)
    vectors, spreads = {}, {}
    for factor in (0.5, 1.0, 1.6):
        model, _, _ = load_run(lip_run, CPU, RenderOverrides(mouth_scale=None if factor == 1.0 else factor))
        assert model.lips.config.mouth_scale == factor
        assert describe_rendering(model.config).startswith(f"mouth scale {factor:g}, ")  # evaluate's report
        with torch.no_grad():
            raw = model.predicted_lips(clip, calibrated=False)
            vectors[factor] = model.clip_lip_vectors(clip)
            torch.testing.assert_close(vectors[factor], model.lips.calibrated(raw, model.lips.utterance_gain(raw)
                                                                              * factor))
        weights = model.lips.scale.float().square()
        spreads[factor] = float(shape_spread(vectors[factor], weights))
    assert spreads[0.5] < 0.9 * spreads[1.0] and spreads[1.6] > 1.1 * spreads[1.0], spreads
    frames = model.lips.bank[model.lips.bank_valid] * model.lips.scale
    assert torch.cdist(vectors[1.6] * model.lips.scale, frames).amin(1).max() < 2 * model.lips.bandwidth
    for factor in (0.0, -1.0, float("inf")):
        with pytest.raises(InputError, match="--mouth-scale .*positive factor"):
            load_run(lip_run, CPU, RenderOverrides(mouth_scale=factor))


def _conditions(batch: int):
    from deltaplane.structs import Conditions

    return Conditions(audio=torch.zeros(batch, 8, 16, 80), eye=torch.full((batch,), 0.3),
                      angles=torch.zeros(batch, 3), landmarks=torch.zeros(batch, 6))


def test_mouth_box_mask_and_its_l1() -> None:
    from deltaplane.data.dataset import box_mask, mouth_boxes
    from deltaplane.losses import masked_l1

    landmarks = np.zeros((1, 68, 2), np.float32)
    landmarks[0, 48:68] = [20.0, 30.0]
    landmarks[0, 48], landmarks[0, 54] = (15.0, 30.0), (25.0, 30.0)  # 10 px wide
    boxes = torch.from_numpy(mouth_boxes(landmarks))
    torch.testing.assert_close(boxes, torch.tensor([[12.0, 22.0, 28.0, 38.0]]), atol=0.3, rtol=0)  # 1.6 widths
    mask = box_mask(torch.tensor([[2.0, 1.0, 4.0, 3.0]]), 6)
    assert mask.shape == (1, 1, 6, 6) and mask.sum() == 4 and mask[0, 0, 1:3, 2:4].all()  # centres 2.5, 3.5 …
    prediction, target = torch.zeros(1, 3, 6, 6), torch.zeros(1, 3, 6, 6)
    prediction[..., 1:3, 2:4] = 0.5
    prediction[..., 5, 5] = 9.0  # outside the box: ignored
    assert masked_l1(prediction, target, mask).item() == pytest.approx(0.5)


def test_predicted_lips_stay_inside_the_training_range() -> None:
    """An unfamiliar voice may drive the regression far outside what the renderer was taught; the calibrated lip
    vector is clamped to the range of the training frames' coefficients."""
    torch.manual_seed(0)
    lips = LipVector(LipConfig(dim=3), code_dim=8, token_dim=8)
    shapes = torch.randn(200, 40)
    lips.fit(shapes)
    tracked = lips.coefficients(shapes)
    with torch.no_grad():
        lips.head.weight.mul_(100.0)  # a regression that overshoots
    code = torch.randn(64, 8)
    predicted = lips.predict(code)
    assert (predicted >= tracked.amin(0) - 1e-5).all() and (predicted <= tracked.amax(0) + 1e-5).all()
    raw = lips.predict(code, calibrated=False)
    assert raw.abs().max() > tracked.abs().max()  # the raw output (for the loss) is not clamped


def test_scheduled_sampling_feeds_the_renderer_the_audio_lips_but_keeps_the_tracked_target(
        synthetic_dataset: Path, tmp_path: Path) -> None:
    """`TrainConfig.lip_sampling`: driven by the audio's lip vector, the renderer learns something else in the first
    step (its second step renders differently), while the regression (against the tracked lips) is the same."""
    model_config, train_config = get_preset("tiny")
    model_config = dataclasses.replace(model_config, audio_token="lips")
    first_steps = []
    for sampling in (0.0, 1.0):
        config = dataclasses.replace(train_config, steps=2, log_every=1, eval_every=0, checkpoint_every=1000,
                                     sample_every=1000, warmup_delta_steps=0, lip_sampling=sampling)
        run_dir = tmp_path / f"sampling_{sampling:g}"
        train(synthetic_dataset, run_dir, model_config, config, "tiny", CPU, progress=False)
        first_steps.append([record for record in read_log(run_dir) if "loss" in record])
    tracked, sampled = first_steps
    assert [r["step"] for r in tracked] == [r["step"] for r in sampled] == [1, 2]
    for step in (0, 1):
        assert sampled[step]["loss/lips"] == pytest.approx(tracked[step]["loss/lips"], rel=1e-5)
    assert sampled[0]["loss/l1_raw"] == pytest.approx(tracked[0]["loss/l1_raw"], rel=1e-6)  # a zero deltaplane
    assert sampled[1]["loss/l1_raw"] != pytest.approx(tracked[1]["loss/l1_raw"], rel=1e-6)
    # the log also carries what the collapse guard watches and the deltaplane's size, zero until its first update
    assert tracked[0]["train/delta_rms"] == 0.0 < tracked[1]["train/delta_rms"]
    assert all(0.0 < record["train/opacity"] <= 1.0 for record in tracked)


def test_audio_driven_frames_get_the_lip_vector_inference_gives_them() -> None:
    """Scheduled sampling (`TriplaneTalker.tokens(audio_driven=…)`): a sampled frame's token is the one the audio
    gives at inference (calibrated and snapped once, no teacher noise), not that vector taught again (snapped a
    second time, noise added), and the other frames keep their taught tracked vectors."""
    from deltaplane.models.triplane_talker import TriplaneTalker

    model_config, _ = get_preset("tiny")
    lips = dataclasses.replace(model_config.lips, snap=1.0, teacher_snap=1.0)
    torch.manual_seed(0)
    model = TriplaneTalker(dataclasses.replace(model_config, audio_token="lips", lips=lips)).train()
    model.lips.fit(torch.randn(200, 40))
    conditions = dataclasses.replace(_conditions(6), audio=torch.randn(6, 8, 16, model_config.audio.feature_dim))
    mouths = torch.randn(6, 40)
    driven = torch.tensor([True, False, True, True, False, False])
    with torch.no_grad():
        inference = model.tokens(conditions)
        taught = model.tokens(conditions, mouth_shape=mouths)
        sampled = model.tokens(conditions, mouth_shape=mouths, audio_driven=driven)
    torch.testing.assert_close(sampled[driven], inference[driven])
    assert not torch.allclose(sampled[~driven], inference[~driven])
    assert not torch.allclose(taught[driven], inference[driven])


def test_a_loaded_bank_snaps_as_the_fitted_one_and_an_empty_one_leaves_vectors_alone() -> None:
    """Whether the bank holds frames is known on the host (no wait, no graph break in a compiled step): `fit` sets
    it, and loading a state dict reads it from the loaded bank."""
    torch.manual_seed(0)
    shapes, config = torch.randn(300, 40), LipConfig(snap=1.0)
    fitted, empty, loaded = (LipVector(config, code_dim=4, token_dim=8) for _ in range(3))
    fitted.fit(shapes)
    vectors = 2 * torch.randn(5, config.dim)
    torch.testing.assert_close(empty.snapped(vectors), vectors)  # no frames: nothing to snap to
    loaded.load_state_dict(fitted.state_dict())
    assert not torch.allclose(loaded.snapped(vectors), vectors)
    torch.testing.assert_close(loaded.snapped(vectors), fitted.snapped(vectors))
    loaded.load_state_dict(empty.state_dict())
    torch.testing.assert_close(loaded.snapped(vectors), vectors)


def test_frame_spacing_skips_neighbours_and_snap_blends_only_valid_frames() -> None:
    """`frame_spacing`: frames on a line, each 1 apart, with copies of themselves 2 frames away... the spacing is the
    distance to the nearest frame more than `skip` frames away. `snap_to_frames`: near a frame (small bandwidth) a
    vector becomes that frame; far away, a blend of the frames (inside their hull); masked frames never count."""
    line = torch.arange(10.0)[:, None].repeat_interleave(2, 0) * torch.tensor([[1.0, 0.0]])  # 0,0,1,1,2,2...
    assert frame_spacing(line, skip=0) == 0.0  # its copy, one frame away
    assert frame_spacing(line, skip=1) == pytest.approx(1.0)  # the next value, two frames away
    frames = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [50.0, 50.0]])
    valid = torch.tensor([True, True, True, False])
    snapped = snap_to_frames(torch.tensor([[0.9, 0.1], [40.0, 40.0]]), frames, valid, 0.1)
    assert torch.allclose(snapped[0], frames[1], atol=1e-4)
    assert snapped[1].min() >= 0 and snapped[1].sum() <= 1 + 1e-6  # among the valid three, not the masked one
    wide = snap_to_frames(torch.tensor([[0.0, 0.0]]), frames, valid, 100.0)
    assert torch.allclose(wide, frames[:3].mean(0, keepdim=True), atol=1e-3)


def test_lip_snap_keeps_predicted_mouths_among_the_training_frames() -> None:
    """`LipConfig.snap`: the calibrated lip vector is pulled among the training frames' lip vectors. Vectors that
    combine the components as no frame did (here: a strong gain on random codes) end up near the frames, closer than
    without, while a vector on a training frame stays there; the bank is thinned evenly when the split is longer
    than `bank_size`; without `snap` a checkpoint holds no bank."""
    torch.manual_seed(0)
    # mouths of two degrees of freedom (opening, width) plus tracking noise: a thin cloud in the 8 components
    shapes = torch.randn(600, 2) @ torch.randn(2, 40) + 0.02 * torch.randn(600, 40)
    plain = LipVector(LipConfig(), code_dim=4, token_dim=8)
    snapping = LipVector(LipConfig(snap=1.0, bank_size=256), code_dim=4, token_dim=8)
    for lips in (plain, snapping):
        lips.fit(shapes)
        lips.gain.fill_(3.0)
    snapping.head.load_state_dict(plain.head.state_dict())
    coefficients = plain.coefficients(shapes)
    assert int(snapping.bank_valid.sum()) == 256
    assert torch.allclose(snapping.bank[0], coefficients[0]) and torch.allclose(snapping.bank[255], coefficients[-1])
    code = torch.randn(128, 4) * 3
    with torch.no_grad():
        before, after = plain.predict(code), snapping.predict(code)
    frames = snapping.bank * snapping.scale

    def nearest(vectors: torch.Tensor) -> torch.Tensor:
        return torch.cdist(vectors * snapping.scale, frames).amin(1)

    assert nearest(after).mean() < 0.5 * nearest(before).mean()
    # A training frame's own vector (reached through the head's bias: zero weights) stays within a spacing of it.
    with torch.no_grad():
        snapping.head.weight.zero_()
        snapping.head.bias.copy_(snapping.bank[100])
        snapping.gain.fill_(1.0)
        kept = snapping.predict(torch.zeros(1, 4))
    assert ((kept - snapping.bank[100]) * snapping.scale).norm() < snapping.bandwidth
    # `snapped` is the snap alone (the tracked lips of gpu_lip_motion's snapped teacher): the calibration's last
    # step at gain 1 inside the range, and nothing without `snap`
    torch.testing.assert_close(snapping.snapped(coefficients[:50]), snapping.calibrated(coefficients[:50]))
    assert ((snapping.snapped(before) - before).norm(dim=1) > 0).all()
    assert torch.equal(plain.snapped(before), before)
    unfitted = LipVector(LipConfig(snap=1.0), code_dim=4, token_dim=8)  # no frame stored: nothing to snap to
    assert torch.equal(unfitted.snapped(before), before)
    assert "bank" not in plain.state_dict()
    config = from_dict(TriplaneTalkerConfig, to_dict(dataclasses.replace(TriplaneTalkerConfig(),
                                                                         lips=LipConfig(snap=1.0))))
    assert config.lips.snap == 1.0


def test_snapped_calibration_gives_the_tracked_spread_back_and_bad_settings_are_refused() -> None:
    """`calibrate` with `snap`: the kernel mean pulls towards the middle of the frames, so the gain is refined on the
    snapped vectors until their spread (`pooled_spread`) is the tracked one's, within 1 % (here a wide kernel moves
    the unrefined spread by more than 2 %)."""
    torch.manual_seed(0)
    shapes = torch.randn(500, 2) @ torch.randn(2, 40) + 0.02 * torch.randn(500, 40)
    lips = LipVector(LipConfig(snap=3.0), code_dim=4, token_dim=8)
    lips.fit(shapes)
    target = lips.coefficients(shapes)
    predicted = 0.5 * target + 0.1 * torch.randn_like(target)  # a shrunk, noisy regression
    lips.calibrate(predicted, target)
    weights = lips.scale.square()
    assert pooled_spread(lips.calibrated(predicted), target, weights)[0] == pytest.approx(1.0, abs=0.01)
    once = LipVector(LipConfig(snap=3.0), code_dim=4, token_dim=8)
    once.fit(shapes)
    once.gain.fill_(min(pooled_spread(predicted, target, weights)[0], MAX_GAIN))  # the unrefined gain
    assert abs(pooled_spread(once.calibrated(predicted), target, weights)[0] - 1.0) > 0.02
    for bad in ({"snap": 0.0}, {"snap": -1.0}, {"bank_size": 1}, {"snap_keep": -1}, {"snap_keep": 9}):
        with pytest.raises(ValueError):
            LipConfig(**bad)


def test_snap_keep_leaves_the_leading_components_as_they_are() -> None:
    """`LipConfig.snap_keep`: the first components pass the snap unchanged, the others are those of the full snap
    (the kernel weights still come from every component), for inference and the renderer's teacher alike."""
    torch.manual_seed(0)
    shapes = torch.randn(400, 2) @ torch.randn(2, 40) + 0.02 * torch.randn(400, 40)
    full, keeping = (LipVector(LipConfig(snap=1.0, snap_keep=keep), code_dim=4, token_dim=8) for keep in (0, 1))
    for lips in (full, keeping):
        lips.fit(shapes)
    vectors = 2 * torch.randn(64, 8)
    for leave_out in (False, True):
        snapped, kept = full.snapped(vectors, leave_out), keeping.snapped(vectors, leave_out)
        torch.testing.assert_close(kept[:, 0], vectors[:, 0])
        torch.testing.assert_close(kept[:, 1:], snapped[:, 1:])
        assert (snapped[:, 0] - vectors[:, 0]).abs().mean() > 0.1  # the full snap moves the leading component


def test_each_lip_regression_learns_from_its_own_frames_and_their_mean_drives_the_mouth(
        synthetic_dataset: Path) -> None:
    """`TrainConfig.lip_batch` and `LipConfig.regressions`: the lips term is the mean of each regression's error on
    its own frames (`lip_frames`; one set: shared; none: the rendered batch's), calibration-block frames left out,
    and the lip vector that drives the mouth is the regressions' mean."""
    from deltaplane.data.dataset import lip_frames, make_batch
    from deltaplane.models.triplane_talker import TriplaneTalker
    from deltaplane.structs import LipFrames

    torch.manual_seed(0)
    model_config, _ = get_preset("tiny")
    _, clip = load_clip(synthetic_dataset, "train", size=model_config.output_resolution)
    audio = dataclasses.replace(model_config.audio, feature_dim=clip.audio_features.shape[-1])
    lips = dataclasses.replace(model_config.lips, calibration_every=2, regressions=3)  # the short clip: a block out
    model = TriplaneTalker(dataclasses.replace(model_config, audio_token="lips", audio=audio, lips=lips))
    model.lips.fit(clip.mouth_shapes)
    regressions = model.lip_regressions()
    assert len(regressions) == 3 and regressions[0] == (model.audio_encoder, model.lips.head)
    fitted = torch.nonzero(~model.lips.held_out(clip.indices))[:, 0]
    positions = fitted[torch.randperm(len(fitted))[:12]]
    frames = lip_frames(clip, positions)
    assert frames.audio.shape == (12, 8, 16, clip.audio_features.shape[-1])
    assert torch.equal(frames.indices, clip.indices[positions])
    assert torch.equal(frames.mouth_shape, clip.mouth_shapes[positions])
    with torch.no_grad():
        members = [head(encoder(frames.audio)) for encoder, head in regressions]
    torch.testing.assert_close(model.predicted_lips(frames.audio, calibrated=False), torch.stack(members).mean(0))

    def exact(k: int) -> LipFrames:  # frames whose tracked mouths are what regression k predicts
        return dataclasses.replace(frames, mouth_shape=model.lips.shapes(members[k]))

    # regression k is scored on frames[k] only: each set exact for its own regression gives no error, the same
    # sets handed to the wrong regressions do
    assert model.lip_regression_error([exact(0), exact(1), exact(2)]).item() == pytest.approx(0.0, abs=1e-6)
    assert model.lip_regression_error([exact(1), exact(2), exact(0)]).item() > 1e-4
    errors = []
    for encoder, head in regressions:
        target = model.lips.coefficients(frames.mouth_shape)
        errors.append((head(encoder(frames.audio)) - target).square().mean())
    assert model.lip_regression_error([frames]).item() == pytest.approx(torch.stack(errors).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="2 sets of lip frames for 3 regressions"):
        model.lip_regression_error([frames, frames])
    # calibration-block frames with wrong targets change nothing: the gain is fitted on those frames unseen
    held = lip_frames(clip, torch.nonzero(model.lips.held_out(clip.indices))[:2, 0])
    wrong = dataclasses.replace(held, mouth_shape=held.mouth_shape + 5.0)
    mixed = [LipFrames(torch.cat([exact(k).indices, wrong.indices]), torch.cat([exact(k).audio, wrong.audio]),
                       torch.cat([exact(k).mouth_shape, wrong.mouth_shape])) for k in range(3)]
    assert model.lip_regression_error(mixed).item() == pytest.approx(0.0, abs=1e-6)
    # the training loss takes the regressions' frames, or the rendered batch's without them
    batch = make_batch(clip, torch.tensor([0, 5]), model.config.render_resolution)
    output, delta = model(batch.cameras, batch.conditions, mouth_shape=batch.mouth_shape)
    weight = model.config.loss.lips
    assert model.loss_terms(output, delta, batch, lip_frames=[exact(0), exact(1), exact(2)])["lips"].item() == \
        pytest.approx(0.0, abs=1e-6)
    own = [LipFrames(batch.indices, batch.conditions.audio, batch.mouth_shape)]
    assert model.loss_terms(output, delta, batch)["lips"].item() == pytest.approx(
        weight * model.lip_regression_error(own).item())
    with pytest.raises(ValueError, match="regressions"):
        LipConfig(regressions=0)


def test_teacher_snap_teaches_the_renderer_the_snapped_vectors_it_is_driven_with() -> None:
    """`LipConfig.teacher_snap`: the renderer's training vectors (`LipVector.taught`) are the tracked ones plus the
    teacher noise, and for that share of the batch snapped among the *other* training frames (the frame and its
    `NEIGHBOURS` on each side, near-copies of it, left out), as a new frame is at inference. The snapped vectors of
    a cloud of eight independent components are shorter than the tracked ones (why the renderer must see them).
    Off, `taught` draws exactly the noise it always drew, so runs without it keep their random stream."""
    torch.manual_seed(0)
    shapes = torch.randn(800, 40)
    config = LipConfig(snap=1.0, teacher_noise=0.0)
    always, half, never = (LipVector(dataclasses.replace(config, teacher_snap=share), code_dim=4, token_dim=8)
                           for share in (1.0, 0.5, 0.0))
    for lips in (always, half, never):
        lips.fit(shapes)
    tracked = always.coefficients(shapes[:400])
    snapped = always.snapped(tracked, leave_out=True)
    torch.testing.assert_close(always.taught(tracked), snapped)
    assert snapped.norm(dim=1).median() < 0.8 * tracked.norm(dim=1).median()
    scale, bank = always.scale, always.bank
    position = torch.arange(len(bank))
    for frame in (0, 1, 200, 399):
        others = always.bank_valid & ((position - frame).abs() > NEIGHBOURS)
        expected = snap_to_frames(tracked[frame:frame + 1] * scale, bank * scale, others, always.bandwidth) / scale
        torch.testing.assert_close(snapped[frame:frame + 1], expected)
    tiny = LipVector(dataclasses.replace(config, bank_size=3), code_dim=4, token_dim=8)
    tiny.fit(shapes)  # a bank no larger than a frame's neighbourhood: it keeps them all
    torch.testing.assert_close(tiny.snapped(tracked, leave_out=True), tiny.snapped(tracked))
    taught = half.taught(tracked)
    chosen = torch.isclose(taught, snapped).all(1)
    assert torch.equal(chosen, ~torch.isclose(taught, tracked).all(1))  # each row one or the other
    assert 150 < int(chosen.sum()) < 250
    torch.testing.assert_close(never.taught(tracked), tracked)
    noisy = LipVector(LipConfig(snap=1.0), code_dim=4, token_dim=8)
    noisy.fit(shapes)
    torch.manual_seed(1)
    expected = tracked + noisy.config.teacher_noise * torch.randn_like(tracked)
    follow = torch.rand(1)
    torch.manual_seed(1)
    torch.testing.assert_close(noisy.taught(tracked), expected)
    assert torch.equal(torch.rand(1), follow)
    with pytest.raises(ValueError, match="teacher_snap"):
        LipConfig(teacher_snap=0.5)  # nothing to snap to without `snap`
    with pytest.raises(ValueError, match="teacher_snap"):
        LipConfig(snap=1.0, teacher_snap=1.5)


def test_the_lip_regressions_run_in_full_precision_under_autocast() -> None:
    """The trainer's steps run under bf16 autocast on CUDA, its prefit, evaluation and inference in fp32: the lip
    regressions, their training error and the lip basis (targets, taught vectors) give the same numbers either way,
    so what the steps fit is what the renders read (docs/lip-motion.md "Run 48": taught in bf16, a fitted
    regression came apart in fp32)."""
    from deltaplane.models.triplane_talker import TriplaneTalker
    from deltaplane.structs import LipFrames

    model_config, _ = get_preset("tiny")
    torch.manual_seed(0)
    model = TriplaneTalker(dataclasses.replace(model_config, audio_token="lips"))
    model.lips.fit(torch.randn(200, 40))
    audio = torch.randn(6, 8, 16, model_config.audio.feature_dim)
    mouths = torch.randn(6, 40)
    frames = [LipFrames(torch.arange(6), audio, mouths)]

    def outputs() -> tuple[torch.Tensor, ...]:
        coefficients = model.lips.coefficients(mouths)
        return (model.predicted_lips(audio, calibrated=False), model.lip_regression_error(frames), coefficients,
                model.lips.shapes(coefficients))

    with torch.no_grad():
        full = outputs()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = outputs()
    for exact, under_autocast in zip(full, mixed):
        assert under_autocast.dtype == torch.float32
        torch.testing.assert_close(under_autocast, exact, rtol=1e-6, atol=1e-6)
