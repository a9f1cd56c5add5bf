"""The audio half of the lip-vector mode on its own, on the CPU: train the audio encoder + lip head of
`fields.lips` to regress a dataset's tracked lip vectors, with or without per-utterance normalisation and speaker
augmentation, and score the mouth opening it predicts (no renderer involved):

* test split: correlation of the main lip component with the tracked one, and the opening's std and mean ratios;
* every file of AUDIO_DIR: the opening's std and mean ratios against the test split's tracked opening, and the
  landmark sync score (opening vs speech envelope) that `deltaplane evaluate` uses.

    python scripts/lip_regression_ablation.py DATASET AUDIO_DIR --variants plain,norm,aug8,norm+aug8 --steps 3000

A variant is "+"-joined parts: norm (per-utterance normalisation), augN (N speaker-augmented copies), phones
(pocketsphinx phones appended to the features; needs pocketsphinx), strat (the copies' perturbations stratified over
their ranges, `SpeakerAugmentConfig.stratified`), snrL (the copies' lowest signal-to-noise ratio, dB), snapH
(`LipConfig.snap` = H: the calibrated lip vector pulled among the training frames' mouths), emaA (the calibrated lip
vectors smoothed over time as `deltaplane render --lip-smoothing A` smooths the audio token), shapeloss (the
regression's squared error weighted by each component's variance in mouth-shape space, as the landmarks see it,
instead of equally in whitened units), gate (where the audio's level says the speaker pauses, `speech_activity`,
the raw lip vector is drawn to the mean lip vector of the training frames' pauses), ctxN (N per-frame audio windows
around each frame, `AudioEncoderConfig.num_windows` and `data.dataset.AUDIO_CONTEXT`: 8 by default), gainX (the
calibrated lip gain times X: how the landmark distance trades against the spread), calopen (the gain refined so
that the snapped held-out vectors' inner-lip opening, not their pooled spread, moves as much as the tracked one),
uttA (per driving utterance, the gain times (held-out raw spread / the utterance's raw spread)^A: A = 1 makes every
utterance's raw lip vectors move as much as the held-out blocks', whatever the voice; A = 0 is the calibrated gain),
keepK (with snapH: the K leading components left unsnapped, `LipConfig.snap_keep`), preN (N steps at the
prefit's learning rate with an Adam of their own before the `--steps` at `--lr`, as `TrainConfig.lip_prefit_steps`
fits the regressions before the renderer's training), concat (the window codes mixed by an MLP over them side by
side, `AudioEncoderConfig.mixing`), uttopen (with uttA: the
utterance's spread measured on the inner-lip opening of its raw vectors' mouths instead of the pooled shape spread),
uttmean (the gain applied about each driving utterance's own mean raw lip vector instead of the training frames'
mean mouth: a gain above 1 then widens the motion without moving the utterance's mean mouth), openmean (each
utterance's calibrated lip vectors moved along the opening's direction until their mean inner-lip opening is the
training frames' mean).

`test/opening_lag`: the shift in frames (within ±5) at which the predicted opening correlates best with the tracked
one on the test split (`best_lag`; positive: the prediction comes late). `test/pause_opening_ratio`: the predicted
mean opening over the test split's pauses (`speech_activity` 0) over the
tracked one's (None with fewer than 3 pause frames). `test/{pause,speech}_blend_spread` (with snapH): how far apart
the training mouths are that the snap blends into one lip vector (`blend_spread`), for the audio's vectors and, as
`test/tracked_…`, for the tracked ones.

Next to the opening and sync, how far the predicted mouths lie from the mouths the renderer was taught
(`nearest_frame`: mean distance of a lip vector to its nearest training frame in mouth-shape space, in units of the
training frames' own spacing, `fields.lips.frame_spacing`; the tracked test frames give `tracked_nearest_frame`) and
how much they jitter (`jitter_ratio`: mean frame-to-frame change of the opening over the tracked one's), and
the regression's own landmark distance (`shape_lmd`: mean distance of the predicted mouth's 20 points to the
tracked ones, each shape centred on its mean point as the mouth LMD centres its landmarks, in % of the eye-corner
distance; `tracked_basis_lmd`: the same for the tracked shapes' 8-component reconstructions, the basis' floor;
`still_mouth_lmd`: for the training frames' mean mouth on every frame, what a regression must beat).

`--ensemble K` drives the lips by the mean of K regressions (`LipConfig.regressions`; each its own seed and frames,
as training draws them), `--select-every N` keeps the step whose regression fits the held-out calibration blocks
best (docs/lip-motion.md "Run 13": not taken).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from deltaplane.audio.augment import SpeakerAugmentConfig, augmented_windows
from deltaplane.audio.encoder import AudioEncoder, AudioEncoderConfig, ema_smooth
from deltaplane.audio.features import (FEATURE_RATE, SAMPLE_RATE, LogMelExtractor, frame_windows, normalize_utterance,
                                       phone_track)
from deltaplane.audio.io import audio_files, load_audio
from deltaplane.data.dataset import AUDIO_CONTEXT, audio_context, load_clip
from deltaplane.data.schema import AUDIO_WAV
from deltaplane.evaluation.sync import landmark_sync, speech_envelope
from deltaplane.fields.lips import MAX_GAIN, LipConfig, LipVector, frame_spacing, pooled_spread, snap_weights
from deltaplane.geometry.lips import MOUTH_SHAPE_DIM, shape_opening
from deltaplane.training.config import TrainConfig


PAUSE_DB, SPEECH_DB = -40.0, -30.0
"""Speech activity (`speech_activity`) is 0 this far under the clip's loud level (dB) and 1 from `SPEECH_DB` up."""


def speech_activity(samples: np.ndarray, num_frames: int, fps: float) -> np.ndarray:
    """Per-frame speech activity in [0, 1] from the level alone: the RMS (dB) of one frame period of samples around
    each frame's time, relative to the 95th percentile of the frames' levels, ramped linearly from `PAUSE_DB` to
    `SPEECH_DB`. A steady noise floor (the café file) reads as speech throughout; a silent signal is all pause."""
    energy = np.concatenate([[0.0], np.cumsum(np.asarray(samples, np.float64) ** 2)])
    centres, half = np.arange(num_frames) * SAMPLE_RATE / fps, SAMPLE_RATE / fps / 2
    starts, stops = (np.clip(np.round(centres + side).astype(np.int64), 0, len(samples)) for side in (-half, half))
    levels = 10 * np.log10(np.maximum((energy[stops] - energy[starts]) / np.maximum(stops - starts, 1), 1e-12))
    audible = levels[levels > -120]
    if audible.size == 0:
        return np.zeros(num_frames)
    relative = levels - np.quantile(audible, 0.95)
    return np.clip((relative - PAUSE_DB) / (SPEECH_DB - PAUSE_DB), 0.0, 1.0)


def opening(shapes: torch.Tensor) -> np.ndarray:
    """`geometry.lips.shape_opening` of mouth shapes, flattened to one value per shape, as a NumPy array."""
    return shape_opening(shapes.reshape(-1, MOUTH_SHAPE_DIM)).numpy()


def nearest_frame(vectors: torch.Tensor, frames: torch.Tensor, scale: torch.Tensor) -> float:
    """Mean distance (mouth-shape space) from each lip vector to its nearest training frame, in units of the
    frames' own spacing."""
    distances = torch.cdist(vectors * scale, frames * scale).amin(1)
    return distances.mean().item() / frame_spacing(frames * scale)


def shape_lmd(shapes: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean distance (% of the eye-corner distance) of mouth points to the reference's, both centred per frame."""
    points, truth = shapes.reshape(-1, 20, 2), reference.reshape(-1, 20, 2)
    points, truth = points - points.mean(1, keepdim=True), truth - truth.mean(1, keepdim=True)
    return 100 * (points - truth).norm(dim=-1).mean().item()


def opening_ratio(predicted: np.ndarray, tracked: np.ndarray, chosen: np.ndarray) -> float | None:
    """Mean opening over the `chosen` frames (e.g. the pauses: `speech_activity` 0) of the prediction over the
    tracked one's; None with fewer than 3 chosen frames."""
    return float(predicted[chosen].mean() / tracked[chosen].mean()) if chosen.sum() >= 3 else None


def blend_spread(vectors: torch.Tensor, lips: LipVector, chosen: np.ndarray) -> float | None:
    """Mean over the `chosen` frames of how far apart the mouths are that the snap blends into each lip vector: the
    std of the bank frames' openings under the vector's kernel weights (`fields.lips.snap_weights`), over the mean
    bank opening. A blend of closed and open mouths could render as a ghost of both; run 21 found it no larger for
    the audio's pause vectors than for the tracked ones. `vectors` are unsnapped (gain and range applied); None
    without `snap` or with fewer than 3 frames."""
    if lips.config.snap is None or chosen.sum() < 3:
        return None
    scale = lips.scale.float()
    weights = snap_weights(vectors[torch.from_numpy(chosen)] * scale, lips.bank * scale, lips.bank_valid,
                           lips.bandwidth)
    bank_opening = torch.from_numpy(opening(lips.shapes(lips.bank))).float()
    mean = weights @ bank_opening
    spread = (weights @ bank_opening.square() - mean.square()).clamp_min(0).sqrt()
    return float(spread.mean() / bank_opening[lips.bank_valid].mean())


def best_lag(predicted: np.ndarray, tracked: np.ndarray, reach: int = 5) -> int:
    """The shift in frames, within ±`reach`, at which `predicted` correlates best with `tracked`: positive = the
    prediction comes that many frames late (its frame t + lag matches the tracked frame t)."""
    def correlation(lag: int) -> float:
        a, b = (predicted[lag:], tracked[:len(tracked) - lag]) if lag >= 0 else (predicted[:lag], tracked[-lag:])
        return float(np.corrcoef(a, b)[0, 1])

    return max(range(-reach, reach + 1), key=correlation)


def jitter(opening_series: np.ndarray) -> float:
    return float(np.abs(np.diff(opening_series)).mean())


def with_phones(samples: np.ndarray, windows: np.ndarray, fps: float) -> np.ndarray:
    """Log-mel windows with pocketsphinx's phone (one-hot, 40) appended to every feature frame: a
    speaker-independent input (English all-phone decoding; other languages get their nearest English phones)."""
    count = int(len(samples) / 16000 * FEATURE_RATE)
    _, ids = phone_track(samples, count, FEATURE_RATE)
    one_hot = np.eye(40, dtype=np.float32)[ids]
    phones = frame_windows(one_hot, windows.shape[0], fps)
    return np.concatenate([windows, phones], -1)


def run(dataset: Path, audio_dir: Path, variant: str, steps: int, seed: int, batch: int = 32, lr: float = 2e-3,
        calibration_every: int = LipConfig.calibration_every, select_every: int = 0, ensemble: int = 1) -> dict:
    parts = variant.split("+")
    normalize = "norm" in parts
    copies = next((int(part[3:]) for part in parts if part.startswith("aug")), 0)
    snr_floor = next((float(part[3:]) for part in parts if part.startswith("snr")),
                     SpeakerAugmentConfig.snr_range_db[0])
    manifest, train_clip = load_clip(dataset, "train", size=64, normalize_audio=normalize)
    _, test_clip = load_clip(dataset, "test", size=64, normalize_audio=normalize)
    versions = [train_clip.audio_features]
    if copies:
        extra = augmented_windows(load_audio(dataset / AUDIO_WAV), manifest.num_frames, manifest.fps,
                                  SpeakerAugmentConfig(copies=copies, seed=seed, stratified="strat" in parts,
                                                       snr_range_db=(snr_floor, SpeakerAugmentConfig.snr_range_db[1])))
        versions += [torch.from_numpy(normalize_utterance(c) if normalize else c) for c in extra]
    phones = "phones" in parts
    if phones:  # a voice change keeps the phones: the augmented copies share the clip's phone track
        speech = load_audio(dataset / AUDIO_WAV)
        versions = [torch.from_numpy(with_phones(speech, v.numpy(), manifest.fps)) for v in versions]
        test_features = versions[0]
    else:
        test_features = test_clip.audio_features
    snap = next((float(part[4:]) for part in parts if part.startswith("snap")), None)
    ema = next((float(part[3:]) for part in parts if part.startswith("ema")), 0.0)
    shape_loss = "shapeloss" in parts
    gate = "gate" in parts
    activity = torch.from_numpy(speech_activity(load_audio(dataset / AUDIO_WAV), manifest.num_frames, manifest.fps))
    context = next((int(part[3:]) for part in parts if part.startswith("ctx")), AUDIO_CONTEXT)
    gain_factor = next((float(part[4:]) for part in parts if part.startswith("gain")), 1.0)
    utterance_power = next((float(part[3:]) for part in parts if part.startswith("utt") and part != "uttopen"), 0.0)
    utterance_opening = "uttopen" in parts
    about_mean = "uttmean" in parts
    keep_mean_opening = "openmean" in parts
    snap_keep = next((int(part[4:]) for part in parts if part.startswith("keep")), 0)
    prefit = next((int(part[3:]) for part in parts if part.startswith("pre")), 0)

    def windows_at(features: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        return audio_context(features, indices, context)

    smooth = (lambda vectors: ema_smooth(vectors, alpha=ema)) if ema else (lambda vectors: vectors)
    members, best_steps = [], []
    for member in range(ensemble):  # member 0 is the single regression of seed `seed`
        member_seed = seed + 1000 * member
        torch.manual_seed(member_seed)
        encoder = AudioEncoder(AudioEncoderConfig(feature_dim=versions[0].shape[-1], num_windows=context,
                                                  mixing="concat" if "concat" in parts else "attention"))
        lips = LipVector(LipConfig(calibration_every=calibration_every, snap=snap, snap_keep=snap_keep,
                                   per_utterance=utterance_power > 0), code_dim=64, token_dim=64)
        lips.fit(train_clip.mouth_shapes)
        targets = lips.coefficients(train_clip.mouth_shapes)
        component_weights = lips.scale.square() / lips.scale.square().mean()
        calibration = lips.held_out(train_clip.indices)  # as training: never fitted, used for the gain
        fitted = torch.nonzero(~calibration)[:, 0]
        calibration = calibration if calibration.any() else ~calibration
        parameters = [*encoder.parameters(), *lips.head.parameters()]
        optimizer = torch.optim.Adam(parameters, lr=TrainConfig.lip_prefit_lr if prefit else lr)
        generator = torch.Generator().manual_seed(member_seed)
        held_audio = windows_at(versions[0], train_clip.indices[calibration])
        best, best_error, best_step = None, float("inf"), steps
        for step in range(-prefit, steps):
            if prefit and step == 0:  # the training's own optimiser takes over, with fresh moments
                optimizer = torch.optim.Adam(parameters, lr=lr)
            positions = fitted[torch.randint(len(fitted), (batch,), generator=generator)]
            version = versions[int(torch.randint(len(versions), (1,), generator=generator))]
            predicted = lips.predict(encoder(windows_at(version, train_clip.indices[positions])),
                                     calibrated=False)
            squared = (predicted - targets[positions]).square()
            # shapeloss: component k weighted by its variance in mouth-shape space (mean weight 1)
            loss = (squared * component_weights).mean() if shape_loss else squared.mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if select_every and step >= 0 and (step + 1) % select_every == 0:  # the best of the held-out blocks
                with torch.no_grad():
                    error = (lips.predict(encoder(held_audio), False) - targets[calibration]).square().mean().item()
                if error < best_error:
                    best_error, best_step = error, step + 1
                    best = [{k: v.clone() for k, v in m.state_dict().items()} for m in (encoder, lips.head)]
        if best is not None:
            encoder.load_state_dict(best[0])
            lips.head.load_state_dict(best[1])
        members.append((encoder, lips))
        best_steps.append(best_step)
    lips = members[0][1]  # the basis is the same for every member (fitted on the same frames); its gain and snap

    def raw(audio: torch.Tensor) -> torch.Tensor:
        """The members' mean raw lip vector."""
        return torch.stack([member.predict(encoder(audio), calibrated=False) for encoder, member in members]).mean(0)

    def gated(vectors: torch.Tensor, speech: torch.Tensor) -> torch.Tensor:
        """gate: raw lip vectors drawn towards the training pauses' mouth (before the gain) where speech stops."""
        if not gate:
            return vectors
        rest = targets[activity[train_clip.indices] == 0].mean(0) / lips.gain
        return rest + speech.float()[:, None] * (vectors - rest)

    with torch.no_grad():
        held_out = raw(windows_at(versions[0], train_clip.indices[calibration]))
        spread, correlation = pooled_spread(held_out, targets[calibration], lips.scale.square())
        lips.calibrate(held_out, targets[calibration])
        lips.gain.mul_(gain_factor)
        for _ in range(3 if "calopen" in parts else 0):
            moving = opening(lips.shapes(lips.calibrated(held_out))).std()
            lips.gain.mul_(float(opening(lips.shapes(targets[calibration])).std() / max(moving, 1e-9)))

        held_out_opening = float(opening(lips.shapes(held_out)).std())

        def gain_for(vectors: torch.Tensor) -> torch.Tensor:
            """uttA: the gain for this utterance's raw vectors (`LipVector.utterance_gain` at A = 1; uttopen: the
            held-out blocks' opening spread over the utterance's)."""
            if utterance_opening:
                ratio = held_out_opening / max(float(opening(lips.shapes(vectors)).std()), 1e-9)
                return (lips.gain * ratio ** utterance_power).clamp(max=MAX_GAIN)
            return lips.gain * (lips.utterance_gain(vectors) / lips.gain) ** utterance_power

        if keep_mean_opening:
            mean_opening = float(opening(lips.shapes(targets)).mean())
            with torch.enable_grad():  # the opening's direction in lip-vector space, at the training frames' mean
                origin = torch.zeros(1, lips.scale.shape[0], requires_grad=True)
                (direction,) = torch.autograd.grad(shape_opening(lips.shapes(origin)).sum(), origin)
            direction = direction[0] / direction[0].square().sum()  # a step of 1 along it opens the mouth by about 1

        def widened(vectors: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
            """What `LipVector.calibrated` multiplies by `gain`: the raw vectors, or with uttmean the same moved so
            that the gain widens them about the utterance's own mean raw vector."""
            centre = vectors.mean(0) if about_mean else torch.zeros_like(vectors[0])
            return centre / gain + vectors - centre

        def calibrated(vectors: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
            """`LipVector.calibrated` of `widened`; openmean: the result moved along the opening's direction until
            its mean opening is the training frames' (three rounds: the range and the snap move it)."""
            unscaled = widened(vectors, gain)
            result = lips.calibrated(unscaled, gain)
            for _ in range(3 if keep_mean_opening else 0):
                unscaled = unscaled + (mean_opening - float(opening(lips.shapes(result)).mean())) * direction / gain
                result = lips.calibrated(unscaled, gain)
            return result

        test_raw = gated(raw(windows_at(test_features, test_clip.indices)), activity[test_clip.indices])
        test_gain = gain_for(test_raw)
        test_predicted = smooth(calibrated(test_raw, test_gain))
        test_unsnapped = torch.minimum(torch.maximum(widened(test_raw, test_gain) * test_gain, lips.low), lips.high)
        pauses = (activity[test_clip.indices] == 0).numpy()
        tracked_test = lips.coefficients(test_clip.mouth_shapes)
        reference, test_opening = opening(test_clip.mouth_shapes), opening(lips.shapes(test_predicted))
        row = {**{f"gain/{k}": float(g) for k, g in enumerate(lips.gain)}, "test/gain": float(test_gain[0]),
               "calibration/spread_ratio": spread, "calibration/correlation": correlation,
               "selected_step": float(np.mean(best_steps)),
               "test/lip_correlation": float(np.corrcoef(test_predicted[:, 0], tracked_test[:, 0])[0, 1]),
               "test/opening_std_ratio": float(test_opening.std() / reference.std()),
               "test/opening_lag": best_lag(test_opening, reference),
               "test/opening_mean_ratio": float(test_opening.mean() / reference.mean()),
               "test/pause_opening_ratio": opening_ratio(test_opening, reference, pauses),
               "test/pause_blend_spread": blend_spread(test_unsnapped, lips, pauses),
               "test/speech_blend_spread": blend_spread(test_unsnapped, lips, ~pauses),
               "test/tracked_pause_blend_spread": blend_spread(tracked_test, lips, pauses),
               "test/tracked_speech_blend_spread": blend_spread(tracked_test, lips, ~pauses),
               "test/jitter_ratio": jitter(test_opening) / jitter(reference),
               "test/nearest_frame": nearest_frame(test_predicted, targets, lips.scale),
               "test/tracked_nearest_frame": nearest_frame(tracked_test, targets, lips.scale),
               "test/shape_lmd": shape_lmd(lips.shapes(test_predicted), test_clip.mouth_shapes),
               "test/tracked_basis_lmd": shape_lmd(lips.shapes(tracked_test), test_clip.mouth_shapes),
               "test/still_mouth_lmd": shape_lmd(lips.mean.float().expand_as(test_clip.mouth_shapes),
                                                 test_clip.mouth_shapes)}
        for name, path in audio_files(audio_dir).items():
            samples = load_audio(path)
            count = int(len(samples) / 16000 * manifest.fps)
            windows = frame_windows(LogMelExtractor()(samples), count, manifest.fps)
            windows = normalize_utterance(windows) if normalize else windows
            features = torch.from_numpy(with_phones(samples, windows, manifest.fps) if phones else windows)
            speech = torch.from_numpy(speech_activity(samples, count, manifest.fps))
            vectors = gated(raw(windows_at(features, torch.arange(count))), speech)
            vectors = smooth(calibrated(vectors, gain_for(vectors)))
            predicted = opening(lips.shapes(vectors))
            score = landmark_sync(predicted, speech_envelope(samples, count, manifest.fps), 10)
            row[f"cross/{name}/opening_std_ratio"] = float(predicted.std() / reference.std())
            row[f"cross/{name}/opening_mean_ratio"] = float(predicted.mean() / reference.mean())
            row[f"cross/{name}/sync_correlation"] = None if score is None else score.correlation
            row[f"cross/{name}/sync_offset"] = None if score is None else score.offset
            row[f"cross/{name}/nearest_frame"] = nearest_frame(vectors, targets, lips.scale)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("--variants", default="plain,norm,aug8,norm+aug8")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed … first-seed + seeds − 1")
    parser.add_argument("--batch", type=int, default=32, help="frames per step (training: `TrainConfig.lip_batch`)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--calibration-every", type=int, default=LipConfig.calibration_every,
                        help="hold one 1-s block in every N out of the regression to fit the lip gain on, as "
                             "training does (0: fit the gain on the regression's own frames)")
    parser.add_argument("--select-every", type=int, default=0,
                        help="every N steps, score the regression on the held-out calibration blocks and keep the "
                             "best (0: keep the last)")
    parser.add_argument("--ensemble", type=int, default=1,
                        help="train K regressions (seeds seed, seed + 1000, …) and drive the lips by their mean")
    parser.add_argument("--per-seed", action="store_true", help="one row per seed instead of their means")
    args = parser.parse_args()
    table = {}
    for variant in args.variants.split(","):
        rows = [run(args.dataset, args.audio_dir, variant, args.steps, seed, args.batch, args.lr,
                    args.calibration_every, args.select_every, args.ensemble)
                for seed in range(args.first_seed, args.first_seed + args.seeds)]
        table[variant] = rows if args.per_seed else {key: float(np.mean([r[key] for r in rows if r[key] is not None]))
                                                     for key in rows[0]}
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
