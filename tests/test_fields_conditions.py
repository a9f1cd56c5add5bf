"""Condition tokens (spec §5.1): frequency encoding layout, token order, null token, the angle-frequency choice."""

from __future__ import annotations

import math

import pytest
import torch

from deltaplane.fields.conditions import TOKEN_NAMES, ConditionEncoder, ConditionEncoderConfig, frequency_encoding
from deltaplane.structs import Conditions, NeutralTokens


@pytest.mark.parametrize("shape", [(5,), (2, 3, 6)])
@pytest.mark.parametrize("include_input", [True, False])
def test_frequency_encoding_shape(shape: tuple[int, ...], include_input: bool) -> None:
    encoded = frequency_encoding(torch.randn(shape), 4, include_input=include_input)
    dim = shape[-1]
    assert encoded.shape == (*shape[:-1], dim * (2 * 4 + int(include_input)))


def test_frequency_encoding_matches_nerf_embedder_layout() -> None:
    x = torch.randn(7, 3, dtype=torch.float64)
    expected = [x]
    for k in range(5):
        expected += [torch.sin(2.0 ** k * x), torch.cos(2.0 ** k * x)]
    torch.testing.assert_close(frequency_encoding(x, 5), torch.cat(expected, -1))
    assert frequency_encoding(torch.zeros(1, 1, dtype=torch.bfloat16), 16).dtype == torch.float32


def test_tokens_in_order_and_from_their_own_inputs() -> None:
    torch.manual_seed(0)
    encoder = ConditionEncoder(ConditionEncoderConfig())
    audio_code, eye = torch.randn(4, 64), torch.rand(4) * 2
    angles, landmarks = torch.rand(4, 3) - 0.5, torch.rand(4, 6) * 2 - 1
    tokens = encoder(audio_code, eye, angles, landmarks)
    assert tokens.shape == (4, 5, 64) and TOKEN_NAMES == ("audio", "eye", "null", "angles", "landmarks")
    torch.testing.assert_close(tokens[:, 0], audio_code)
    torch.testing.assert_close(tokens[:, 2], encoder.null_token[0].expand(4, -1))
    changed = encoder(audio_code, eye, angles.flip(0), landmarks)
    torch.testing.assert_close(changed[:, [0, 1, 2, 4]], tokens[:, [0, 1, 2, 4]])
    assert not torch.allclose(changed[:, 3], tokens[:, 3])
    neutral = encoder(audio_code, eye.mean().expand(4), torch.zeros(4, 3), landmarks)
    torch.testing.assert_close(neutral[:, 3], neutral[:1, 3].expand(4, -1))


def test_without_angles_every_frame_gets_the_frontal_angle_token() -> None:
    """`ConditionEncoderConfig.angles` False: the angle token is the one of angles 0 whatever the frame's angles;
    the other tokens are those of the encoder with angles."""
    torch.manual_seed(0)
    encoder = ConditionEncoder(ConditionEncoderConfig())
    frontal = ConditionEncoder(ConditionEncoderConfig(angles=False))
    frontal.load_state_dict(encoder.state_dict())
    audio_code, eye, landmarks = torch.randn(4, 64), torch.rand(4) * 2, torch.rand(4, 6) * 2 - 1
    angles = torch.rand(4, 3) - 0.5
    tokens = frontal(audio_code, eye, angles, landmarks)
    expected = encoder(audio_code, eye, torch.zeros(4, 3), landmarks)
    torch.testing.assert_close(tokens, expected)
    assert not torch.allclose(encoder(audio_code, eye, angles, landmarks)[:, 3], expected[:, 3])


def test_null_token_is_a_registered_standard_normal_parameter() -> None:
    torch.manual_seed(0)
    encoder = ConditionEncoder(ConditionEncoderConfig(token_dim=512))
    assert isinstance(encoder.null_token, torch.nn.Parameter) and encoder.null_token.shape == (1, 1, 512)
    assert "null_token" in encoder.state_dict()
    assert abs(encoder.null_token.std().item() - 1.0) < 0.15


def test_mlp_sizes_and_the_angle_frequency_choice() -> None:
    config = ConditionEncoderConfig()
    encoder = ConditionEncoder(config)

    def count(module: torch.nn.Module) -> int:
        return sum(parameter.numel() for parameter in module.parameters())

    assert count(encoder.eye_mlp) == 8_960  # 9 → 64 → 64 → 64 (4 frequencies; the official 33 inputs alias)
    assert count(encoder.landmark_mlp) == 13_376  # 78 → 64 → 64 → 64, as the official
    assert encoder.angle_mlp[0].in_features == 21  # 3 · (1 + 2·3)
    largest_phase = 2.0 ** (config.angle_frequencies - 1) * 0.6
    assert largest_phase < math.pi < 2 * largest_phase  # the most bands that do not wrap for |angle| ≤ 0.6 rad


def test_neutralized_replaces_only_the_masked_frames_non_audio_tokens() -> None:
    eye = torch.tensor([0.1, 0.3, 0.2, 0.9])
    landmarks = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    conditions = Conditions(audio=torch.randn(4, 8, 16, 80), eye=eye, angles=torch.randn(4, 3), landmarks=landmarks)
    neutral = NeutralTokens.of(eye, landmarks)
    assert neutral.eye == 0.2 and neutral.angles.tolist() == [0, 0, 0]  # torch's median is the lower middle
    torch.testing.assert_close(neutral.landmarks, landmarks[1])
    mask = torch.tensor([True, False, False, True])
    out = conditions.neutralized(mask, neutral)
    assert out.audio is conditions.audio
    for name in ("eye", "angles", "landmarks"):
        values, original = getattr(out, name), getattr(conditions, name)
        torch.testing.assert_close(values[~mask], original[~mask])
        torch.testing.assert_close(values[mask], getattr(neutral, name).expand_as(original[mask]))


def test_the_brows_reach_the_landmark_token_and_a_run_replays_them(synthetic_dataset, tmp_path) -> None:
    """`ConditionEncoderConfig.brows`: the landmark token reads 8 inputs, and its last two move it; a run trained
    with them stores the 8-D tracks it replays, so `render` drives the brows as the training video moved them."""
    import dataclasses

    import numpy as np

    from deltaplane import api
    from deltaplane.audio.io import write_wav
    from deltaplane.checkpoint import DRIVING_TRACKS
    from deltaplane.inference import load_run
    from deltaplane.presets import get_preset
    from deltaplane.training.trainer import train

    encoder = ConditionEncoder(ConditionEncoderConfig(brows=True))
    assert encoder.config.landmark_inputs == 8
    landmarks = torch.zeros(2, 8)
    landmarks[1, 6:] = 0.3  # raised brows, nothing else changed
    tokens = encoder(torch.zeros(2, 64), torch.full((2,), 0.3), torch.zeros(2, 3), landmarks)
    assert not torch.allclose(tokens[0, 4], tokens[1, 4])
    torch.testing.assert_close(tokens[0, :4], tokens[1, :4])

    model_config, train_config = get_preset("tiny")
    model_config = dataclasses.replace(model_config,
                                       conditions=dataclasses.replace(model_config.conditions, brows=True))
    train_config = dataclasses.replace(train_config, steps=2, eval_every=0, sample_every=1000)
    run = tmp_path / "run"
    train(synthetic_dataset, run, model_config, train_config, "tiny", torch.device("cpu"), progress=False)
    model, _, driving = load_run(run, torch.device("cpu"))
    assert model.config.conditions.brows and driving.landmarks.shape[1] == 8
    assert np.load(run / DRIVING_TRACKS)["landmarks"].shape[1] == 8
    write_wav(tmp_path / "speech.wav", (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32))
    assert api.render(run, tmp_path / "speech.wav", tmp_path / "out.mp4", device="cpu", progress=False).is_file()


def test_fitted_ranges_spread_a_clips_small_differences_and_a_run_keeps_them(synthetic_dataset, tmp_path) -> None:
    """`ConditionEncoderConfig.fitted_ranges`: inputs that differ by a few hundredths over the frames (as a real
    clip's do) move the tokens several times more once each is mapped from its training range to [−1, 1]; unfitted,
    the encoder is the plain one; far outside the range the token stops changing; a trained run stores the ranges."""
    import dataclasses

    from deltaplane.data.dataset import load_clip
    from deltaplane.fields.conditions import RANGE_CLAMP
    from deltaplane.inference import load_run
    from deltaplane.presets import get_preset
    from deltaplane.training.trainer import train

    generator = torch.Generator().manual_seed(0)
    frames = 400
    eye = 0.31 + 0.045 * torch.randn(frames, generator=generator)
    angles = torch.tensor([-0.06, -0.05, 0.0]) + torch.tensor([0.035, 0.07, 0.014]) * torch.randn(frames, 3,
                                                                                                generator=generator)
    landmarks = torch.tensor([0.05, 0.03, 0.31, -0.14, -0.2, -0.15]) + 0.05 * torch.randn(frames, 6,
                                                                                          generator=generator)
    audio = torch.zeros(frames, 64)
    torch.manual_seed(0)
    plain = ConditionEncoder(ConditionEncoderConfig())
    ranged = ConditionEncoder(ConditionEncoderConfig(fitted_ranges=True))
    ranged.load_state_dict(plain.state_dict(), strict=False)
    torch.testing.assert_close(ranged(audio, eye, angles, landmarks), plain(audio, eye, angles, landmarks))
    ranged.fit(eye, angles, landmarks)
    inside = ranged.ranged("landmarks", landmarks)
    assert (inside.abs() <= 1).float().mean() > 0.97 and (inside.amax(0) > 0.9).all() and (inside.amin(0) < -0.9).all()

    def spread(encoder: ConditionEncoder) -> torch.Tensor:  # per token: change over the frames / size
        tokens = encoder(audio, eye, angles, landmarks)[:, [1, 3, 4]]
        return tokens.std(0).mean(-1) / tokens.abs().mean((0, 2))

    gain = spread(ranged) / spread(plain)  # eye, angles, landmarks (the last already spread by its 2^5 frequency)
    assert (gain > torch.tensor([3.0, 3.0, 1.2])).all(), gain
    far = ranged(audio[:2], torch.tensor([5.0, 50.0]), angles[:2], landmarks[:2])
    torch.testing.assert_close(far[0, 1], far[1, 1])
    assert ranged.ranged("eye", torch.tensor([[5.0]])).item() == RANGE_CLAMP
    with pytest.raises(ValueError, match="fitted_ranges"):
        plain.fit(eye, angles, landmarks)

    model_config, train_config = get_preset("tiny")
    model_config = dataclasses.replace(model_config, conditions=dataclasses.replace(model_config.conditions,
                                                                                    fitted_ranges=True))
    run = tmp_path / "run"
    train(synthetic_dataset, run, model_config, dataclasses.replace(train_config, steps=2, eval_every=0,
                                                                    sample_every=1000),
          "tiny", torch.device("cpu"), progress=False)
    model, _, _ = load_run(run, torch.device("cpu"))
    clip = load_clip(synthetic_dataset, "train", size=model.config.output_resolution)[1]
    expected = ConditionEncoder(model.config.conditions)
    expected.fit(clip.eye, clip.angles, clip.landmarks)
    for name in ("eye_range", "angles_range", "landmarks_range"):
        torch.testing.assert_close(getattr(model.condition_encoder, name), getattr(expected, name))
    assert (model.condition_encoder.eye_range[1] < 0.5).all()  # fitted: not the identity's half-width 1
