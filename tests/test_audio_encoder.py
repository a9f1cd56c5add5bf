"""Audio encoder (AudioNet + AudioAttNet, spec §5.1) and the lip-smoothing EMA."""

from __future__ import annotations

import pytest
import torch

from deltaplane.audio.encoder import AudioEncoder, AudioEncoderConfig, ema_smooth


@pytest.mark.parametrize("feature_dim", [29, 44, 80])
@pytest.mark.parametrize("mixing", ["attention", "concat"])
def test_shapes(feature_dim: int, mixing: str) -> None:
    encoder = AudioEncoder(AudioEncoderConfig(feature_dim=feature_dim, mixing=mixing))
    windows = torch.randn(3, 8, 16, feature_dim)
    assert encoder(windows).shape == (3, 64)
    encoding = encoder(windows, return_attention=True)
    assert encoding.window_codes.shape == (3, 8, 64)
    assert encoding.attention is None if mixing == "concat" else encoding.attention.shape == (3, 8)


@pytest.mark.parametrize("mixing", ["attention", "concat"])
def test_vectorised_equals_per_sample(mixing: str) -> None:
    torch.manual_seed(0)
    encoder = AudioEncoder(AudioEncoderConfig(mixing=mixing))
    windows = torch.randn(5, 8, 16, 44)
    per_sample = torch.cat([encoder(windows[i: i + 1]) for i in range(5)])
    torch.testing.assert_close(encoder(windows), per_sample)


def test_code_is_the_attention_weighted_mix_of_window_codes() -> None:
    torch.manual_seed(0)
    encoder = AudioEncoder(AudioEncoderConfig())
    windows = torch.randn(2, 8, 16, 44)
    encoding = encoder(windows, return_attention=True)
    torch.testing.assert_close(encoding.attention.sum(-1), torch.ones(2))
    torch.testing.assert_close(encoding.code, (encoding.attention[..., None] * encoding.window_codes).sum(1))
    shuffled = encoder.window_codes(windows[:, torch.randperm(8)])  # windows are encoded independently
    torch.testing.assert_close(shuffled.sort(dim=1).values, encoding.window_codes.sort(dim=1).values)


def test_concat_mixing_reads_the_window_codes_in_order() -> None:
    """The "concat" code is the MLP of the eight codes side by side: window order matters, and a change in one
    window's sound alone moves the code."""
    torch.manual_seed(0)
    encoder = AudioEncoder(AudioEncoderConfig(mixing="concat"))
    windows = torch.randn(2, 8, 16, 44)
    encoding = encoder(windows, return_attention=True)
    torch.testing.assert_close(encoding.code, encoder.concat_net(encoding.window_codes.flatten(1)))
    assert not torch.allclose(encoder(windows.flip(1)), encoding.code)
    changed = windows.clone()
    changed[:, 7] += 1.0  # the last window (t + 3) only
    assert (encoder(changed) - encoding.code).abs().amax() > 1e-5  # codes are ~0.05 at initialisation
    assert not hasattr(encoder, "attention_net")  # no unused weights in its checkpoints


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="windows must be"):
        AudioEncoder(AudioEncoderConfig())(torch.randn(2, 8, 16, 80))
    with pytest.raises(ValueError, match="window"):
        AudioEncoderConfig(window=32)
    with pytest.raises(ValueError, match="mixing"):
        AudioEncoderConfig(mixing="mean")  # type: ignore[arg-type]


def test_ema_smooth_closed_form() -> None:
    codes = torch.randn(12, 4, dtype=torch.float64)
    alpha = 0.2
    expected = torch.stack([alpha ** t * codes[0] + (1 - alpha) * sum(alpha ** (t - k) * codes[k]
                                                                       for k in range(1, t + 1))
                            for t in range(12)])
    torch.testing.assert_close(ema_smooth(codes, alpha), expected)
    torch.testing.assert_close(ema_smooth(codes, 0.0), codes)
    constant = torch.ones(5, 3)
    torch.testing.assert_close(ema_smooth(constant), constant)
    assert ema_smooth(codes[:0]).shape == (0, 4)
