"""Deltaplane predictor (spec §5.2–5.4): reference checks of the blocks, zero init, caching and one training step."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from deltaplane.audio.encoder import AudioEncoder, AudioEncoderConfig
from deltaplane.fields.conditions import ConditionEncoder, ConditionEncoderConfig
from deltaplane.fields.deltaplane import DeltaplaneConfig, DeltaplanePredictor
from deltaplane.fields.deltaplane_blocks import SplitBlock, roll_out, triplane_positional_encoding
from deltaplane.fields.resample import downsample2x, upsample2x

TINY = DeltaplaneConfig.tiny()


def _tiny_inputs(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    planes = torch.randn(batch, 3, TINY.plane_channels, TINY.plane_resolution, TINY.plane_resolution,
                         generator=generator)
    return planes, torch.randn(batch, TINY.num_tokens, TINY.token_dim, generator=generator)


def _randomised(model: DeltaplanePredictor) -> DeltaplanePredictor:
    """Give the zero-initialised last layer random weights so outputs are not trivially 0."""
    with torch.no_grad():
        for parameter in model.up[-1].parameters():
            parameter.normal_(0.0, 0.1)
    return model


def test_roll_out_matches_loop_reference() -> None:
    planes = torch.randn(2, 3, 4, 5, 5, dtype=torch.float64)
    size = planes.shape[-1]
    pooled_a, pooled_b = torch.empty_like(planes), torch.empty_like(planes)
    for i in range(size):
        for j in range(size):
            pooled_a[..., i, j] = planes[..., :, i].mean(-1)  # A(P)[i, j] = mean_h P[h, i]
            pooled_b[..., i, j] = planes[..., j, :].mean(-1)  # B(P)[i, j] = mean_w P[j, w]
    p, a, b = planes.unbind(1), pooled_a.unbind(1), pooled_b.unbind(1)
    expected = torch.stack([torch.cat([p[0], a[1], b[2]], 1), torch.cat([b[0], p[1], a[2]], 1),
                            torch.cat([a[0], b[1], p[2]], 1)], 1)
    torch.testing.assert_close(roll_out(planes), expected)


def _plane_norm_reference(x: torch.Tensor, layer: torch.nn.BatchNorm2d, rows: slice, training: bool) -> torch.Tensor:
    """One plane's BatchNorm → LeakyReLU(0.01), using that plane's slice of the stacked norm."""
    normed = F.batch_norm(x, layer.running_mean[rows].clone(), layer.running_var[rows].clone(), layer.weight[rows],
                          layer.bias[rows], training=training)
    return F.leaky_relu(normed, 0.01)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("resample", ["down", "up"])
def test_split_block_equals_three_separate_blocks(training: bool, resample: str) -> None:
    block = SplitBlock(6, 4, resample, "batch").train(training)
    norms = (block.hidden[0], block.output[0])
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_()
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
    planes = torch.randn(2, 3, 6, 8, 8)
    expected = []
    for k in range(3):  # one plane at a time with its slice of every weight: 3 separate convs and norms
        rows = slice(4 * k, 4 * k + 4)
        x = _plane_norm_reference(F.conv2d(planes[:, k], block.conv0.weight[rows], padding=1), norms[0], rows,
                                  training)
        x = _plane_norm_reference(F.conv2d(x, block.conv1.weight[rows], padding=1), norms[1], rows, training)
        expected.append(downsample2x(x) if resample == "down" else upsample2x(x))
    torch.testing.assert_close(block(planes), torch.stack(expected, 1))


def test_positional_encoding_matches_sliced_volume() -> None:
    resolution, dim = 6, 20
    axis_channels = 8  # 2·⌈20/6⌉
    inv_freq = 10000.0 ** (-torch.arange(0, axis_channels, 2, dtype=torch.float64) / axis_channels)
    volume = torch.zeros(resolution, resolution, resolution, 3 * axis_channels, dtype=torch.float64)
    for x in range(resolution):
        for y in range(resolution):
            for z in range(resolution):
                for block, position in enumerate((x, y, z)):
                    for k, frequency in enumerate(inv_freq):
                        volume[x, y, z, block * axis_channels + 2 * k] = torch.sin(position * frequency)
                        volume[x, y, z, block * axis_channels + 2 * k + 1] = torch.cos(position * frequency)
    volume = volume[..., :dim]
    centre = slice(resolution // 2 - 1, resolution // 2 + 1)
    expected = torch.stack((volume[:, :, centre].mean(2), volume[centre].mean(0), volume[:, centre].mean(1)))
    torch.testing.assert_close(triplane_positional_encoding(resolution, dim),
                               expected.reshape(3, resolution ** 2, dim).float())
    assert triplane_positional_encoding(32, 256).shape == (3, 1024, 256)


def test_full_config_parameter_counts() -> None:
    """The spec's ≈16.7 M = 5 814 144 + 6 843 136 + 4 068 288; we drop the conv biases in front of BatchNorm (no
    gradient reaches them) and, with the linear output, the last BN: −2 688 in the encoder, −1 440 in the decoder."""
    model = DeltaplanePredictor(DeltaplaneConfig())

    def count(module: torch.nn.Module) -> int:
        return sum(parameter.numel() for parameter in module.parameters())

    assert (count(model.down), count(model.bottleneck), count(model.up)) == (5_811_456, 6_843_136, 4_066_848)
    leaky = DeltaplanePredictor(DeltaplaneConfig(final_activation="leaky_relu"))
    assert count(leaky.up) == 4_068_288 - 3 * 448


def test_full_width_forward_shapes() -> None:
    """Full channel widths at a CPU-friendly 64² resolution (the full 256² forward takes seconds on CPU)."""
    config = DeltaplaneConfig(plane_resolution=64)
    model = DeltaplanePredictor(config).eval()
    planes = torch.randn(1, 3, 32, 64, 64)
    with torch.no_grad():
        deltaplane, attention = model(planes, torch.randn(1, 5, 64), return_attention=True)
    assert deltaplane.shape == planes.shape
    assert attention.shape == (1, 2, 3, 8 * 8, 5)
    skips = model.encode(planes).skips
    assert [tuple(skip.shape) for skip in skips] == [(1, 3, 64, 32, 32), (1, 3, 128, 16, 16)]


@pytest.mark.parametrize("final_activation", ["none", "leaky_relu"])
@pytest.mark.parametrize("block_norm", ["batch", "group"])
def test_deltaplane_is_exactly_zero_at_init(final_activation: str, block_norm: str) -> None:
    config = dataclasses.replace(TINY, final_activation=final_activation, block_norm=block_norm)
    model = DeltaplanePredictor(config)
    planes, tokens = _tiny_inputs()
    for training in (True, False):
        deltaplane = model.train(training)(planes, tokens)
        assert deltaplane.shape == planes.shape
        assert torch.equal(deltaplane, torch.zeros_like(deltaplane))


def test_attention_maps_sum_to_one_over_tokens() -> None:
    model = DeltaplanePredictor(TINY)
    planes, tokens = _tiny_inputs()
    _, attention = model(planes, tokens, return_attention=True)
    assert attention.shape == (2, TINY.num_layers, 3, TINY.grid_resolution ** 2, 5)
    assert (attention >= 0).all()
    torch.testing.assert_close(attention.sum(-1), torch.ones(attention.shape[:-1]))


@pytest.mark.parametrize("training", [False, True])
def test_cached_encoding_equals_one_shot_forward(training: bool) -> None:
    model = _randomised(DeltaplanePredictor(TINY)).train(training)
    planes, tokens = _tiny_inputs(batch=3)
    identity = planes[:1]
    one_shot = model(identity.expand(3, -1, -1, -1, -1), tokens)
    encoded = model.encode(identity)  # batch 1, broadcast to the 3 frames
    torch.testing.assert_close(model.decode(encoded, tokens), one_shot)
    torch.testing.assert_close(model(identity, tokens), one_shot)
    assert one_shot.abs().amax() > 0


def test_wrong_token_shape_and_bad_config_raise() -> None:
    model = DeltaplanePredictor(TINY)
    planes, tokens = _tiny_inputs()
    with pytest.raises(ValueError, match="tokens"):
        model(planes, tokens[:, :4])
    with pytest.raises(ValueError, match="bottleneck_dim"):
        DeltaplaneConfig(bottleneck_dim=128)
    with pytest.raises(ValueError, match="num_heads"):
        DeltaplaneConfig(num_heads=3)


def _condition_stack(feature_dim: int = 8) -> tuple[AudioEncoder, ConditionEncoder]:
    return AudioEncoder(AudioEncoderConfig(feature_dim=feature_dim)), ConditionEncoder(ConditionEncoderConfig())


def _tokens(audio: AudioEncoder, conditions: ConditionEncoder, batch: int, device: str = "cpu") -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    windows = torch.randn(batch, 8, 16, audio.config.feature_dim, generator=generator).to(device)
    eye = torch.rand(batch, generator=generator).mul(2).to(device)
    angles = torch.rand(batch, 3, generator=generator).sub(0.5).to(device)
    landmarks = torch.rand(batch, 6, generator=generator).mul(2).sub(1).to(device)
    return conditions(audio(windows), eye, angles, landmarks)


@pytest.mark.parametrize("final_activation", ["none", "leaky_relu"])
def test_one_step_moves_the_deltaplane_and_gradients_reach_every_parameter(final_activation: str) -> None:
    torch.manual_seed(0)
    audio, conditions = _condition_stack()
    model = DeltaplanePredictor(dataclasses.replace(TINY, final_activation=final_activation))
    modules = torch.nn.ModuleDict({"audio": audio, "conditions": conditions, "predictor": model})
    optimizer = torch.optim.Adam(modules.parameters(), lr=1e-3)
    planes, _ = _tiny_inputs()
    target = torch.randn_like(planes)

    def step() -> torch.Tensor:
        optimizer.zero_grad()
        deltaplane = model(planes, _tokens(audio, conditions, batch=2))
        F.mse_loss(deltaplane, target).backward()
        return deltaplane.detach()

    assert torch.equal(step(), torch.zeros_like(planes))
    optimizer.step()
    assert step().abs().amax() > 0
    silent = [name for name, parameter in modules.named_parameters()
              if parameter.grad is None or not parameter.grad.abs().amax() > 0]
    assert silent == []
    assert conditions.null_token.grad.abs().amax() > 0


@pytest.mark.cuda
def test_cuda_bf16_autocast_matches_fp32() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    audio, conditions = (module.cuda() for module in _condition_stack())
    model = _randomised(DeltaplanePredictor(TINY)).cuda().eval()
    planes = _tiny_inputs()[0].cuda()
    with torch.no_grad():
        reference = model(planes, _tokens(audio, conditions, 2, "cuda"))
        with torch.autocast("cuda", dtype=torch.bfloat16):
            tokens = _tokens(audio, conditions, 2, "cuda")
            deltaplane, attention = model(planes, tokens, return_attention=True)
    assert deltaplane.device.type == "cuda" and torch.isfinite(deltaplane).all()
    torch.testing.assert_close(attention.float().sum(-1), torch.ones(attention.shape[:-1], device="cuda"),
                               atol=1e-2, rtol=0)
    assert (deltaplane.float() - reference).abs().amax() < 0.05 * reference.abs().amax()
