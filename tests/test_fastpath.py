"""The fast rendering path against the reference: the channels-last tri-plane lookup and the fused Triton field
(values and gradients), whole clips (fp32: the reference's frames; bf16 and compiled: within bf16 tolerance), and
`deltaplane bench`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from deltaplane import api
from deltaplane.bench import random_weights_model
from deltaplane.cli import main
from deltaplane.errors import InputError
from deltaplane.fastpath import (FastRenderConfig, FastRenderer, composite_merged, sample_triplane_channels_last,
                                 triplane_field_reference)
from deltaplane.fields.lips import LipConfig
from deltaplane.fields.triplane import Confinement, OSGDecoder, TriplaneField, sample_triplane
from deltaplane.geometry.cameras import orbit_cam2world, orbit_cameras, talk3d_orbit_angles
from deltaplane.inference import render_clip
from deltaplane.models.triplane_talker import MOUTH_BOX_EDGE, TriplaneTalker
from deltaplane.presets import get_preset
from deltaplane.render.volume import composite
from deltaplane.structs import Conditions

CPU = torch.device("cpu")


def _needs_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")


def _tiny_model(device: torch.device, jitter: bool = True, background: str = "field", lips: bool = False,
                upsamplings: int = 2, confined: tuple[int, ...] = (), torso: bool = False,
                input_blocks: int = 0, identity_scale: int = 1, brows: bool = False) -> TriplaneTalker:
    """The tiny preset with several ray chunks (32² rays, chunks of 300) and every weight perturbed, so the zero-
    initialised deltaplane and ToRGB layers take part; `jitter`: random ray samples at inference too
    (`VolumeRenderConfig.jitter_at_inference`), so that the fast path draws them as the reference does; in plate
    mode, a random plate seen from a camera off the frontal one; `lips`: the `fast` preset's lip vector (snapped
    among random mouths) and mouth planes; `upsamplings` 1: 64² rays and a one-block super-resolution to the same
    128² output; `confined`: the planes of mouth planes confined to their box (`TriplaneTalkerConfig.mouth_confined`,
    `mouth_planes_on`; none: unconfined mouth planes on all three); `torso`: a torso of its own
    (`TriplaneTalkerConfig.torso_follow` (0.1, 0.6)); `input_blocks`: the super-resolution's residual blocks at the
    rendering resolution (`SuperResolutionConfig.input_blocks`); `identity_scale` 2: identity planes at twice the
    resolution (`TriplaneTalkerConfig.identity_scale`); `brows`: the brows in the landmark token
    (`ConditionEncoderConfig.brows`)."""
    config, _ = get_preset("tiny")
    lip_mode = ({"audio_token": "lips", "mouth_planes": 2, "lips": LipConfig(snap=1.0),
                 "mouth_confined": bool(confined), "mouth_planes_on": confined or (0, 1, 2)} if lips else {})
    render = config.output_resolution // 2 ** upsamplings
    volume = dataclasses.replace(config.volume, jitter=jitter, jitter_at_inference=jitter)
    config = dataclasses.replace(config, ray_chunk=300, volume=volume,
                                 background=background, render_resolution=render, **lip_mode,
                                 identity_scale=identity_scale,
                                 conditions=dataclasses.replace(config.conditions, brows=brows),
                                 torso_follow=(0.1, 0.6) if torso else None,
                                 superres=dataclasses.replace(config.superres, input_resolution=render,
                                                              upsamplings=upsamplings, input_blocks=input_blocks,
                                                              input_channels=8))
    torch.manual_seed(0)
    model = TriplaneTalker(config)
    if lips:
        model.lips.fit(torch.randn(300, 40))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
        if torso:  # a random model's frames barely follow its planes: make the torso's count
            model.torso_planes.mul_(20)
    if background != "field":
        size = config.output_resolution
        camera = orbit_cameras(torch.tensor([0.05]), torch.tensor([-0.03]), size, size)
        model.load_background_plate(2 * torch.rand(3, size, size, generator=generator) - 1, camera)
    return model.to(device).eval()


def _clip(model: TriplaneTalker, num_frames: int) -> tuple[Conditions, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    conditions = Conditions(audio=torch.randn(num_frames, 8, 16, model.config.audio.feature_dim, generator=generator),
                            eye=0.2 + 0.1 * torch.rand(num_frames, generator=generator),
                            angles=0.1 * torch.randn(num_frames, 3, generator=generator),
                            landmarks=2 * torch.rand(num_frames, model.config.conditions.landmark_inputs,
                                                     generator=generator) - 1)
    angles = talk3d_orbit_angles(num_frames)
    return conditions, orbit_cam2world(angles[:, 0], angles[:, 1])


def _plate_warps(num_frames: int) -> torch.Tensor:
    """Dataset-frame plate warps: near the identity, a different small similarity-like map per frame."""
    generator = torch.Generator().manual_seed(4)
    return torch.eye(2, 3) + 0.05 * torch.randn(num_frames, 2, 3, generator=generator)


def _both(model: TriplaneTalker, config: FastRenderConfig, batch: int = 2, num_frames: int = 5, warped: bool = False
          ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], FastRenderer]:
    """(reference rgb, depth), (fast rgb, depth) of one clip with a last partial batch and lip smoothing; `warped`:
    the plate placed by per-frame warps (dataset cameras) instead of its plane."""
    conditions, cam2world = _clip(model, num_frames)
    plate_warp = _plate_warps(num_frames) if warped else None
    reference = list(render_clip(model, conditions, cam2world, batch_size=batch, lip_smoothing=0.2, seed=3,
                                 plate_warp=plate_warp))
    renderer = FastRenderer(model, batch, config)
    fast = list(renderer.render_clip(conditions, cam2world, lip_smoothing=0.2, seed=3, plate_warp=plate_warp))
    stack = lambda frames, index: torch.stack([frame[index].float() for frame in frames])  # noqa: E731
    return (stack(reference, 0), stack(reference, 1)), (stack(fast, 0), stack(fast, 1)), renderer


def _assert_within_bf16(fast: torch.Tensor, reference: torch.Tensor) -> None:
    relative = ((fast - reference).norm() / reference.norm()).item()
    assert relative < 1e-2, relative
    assert (fast - reference).abs().max().item() < 0.05


def _assert_sampler_matches(device: torch.device) -> None:
    generator = torch.Generator().manual_seed(0)
    planes = torch.randn(2, 3, 5, 6, 9, dtype=torch.float64, generator=generator)  # [B, 3, C, H, W], H ≠ W
    points = (torch.rand(2, 200, 3, dtype=torch.float64, generator=generator) - 0.5) * 1.4  # some outside the box
    planes, points = planes.to(device).requires_grad_(), points.to(device).requires_grad_()
    reference = sample_triplane(planes, points, box_warp=1.0)
    fast = sample_triplane_channels_last(planes.permute(0, 1, 3, 4, 2), points, box_warp=1.0)
    torch.testing.assert_close(fast, reference, rtol=1e-10, atol=1e-12)
    weights = torch.randn_like(reference)
    grads_reference = torch.autograd.grad((reference * weights).sum(), (planes, points))
    grads_fast = torch.autograd.grad((fast * weights).sum(), (planes, points))
    for grad_fast, grad_reference in zip(grads_fast, grads_reference):
        torch.testing.assert_close(grad_fast, grad_reference, rtol=1e-9, atol=1e-11)


def test_merged_composite_is_the_composite_of_the_samples_in_depth_order() -> None:
    """`composite_merged` sorts only densities and depths, and weights each set's features where they lie: the same
    features, depth, weights and opacity as gathering everything into depth order (float64), ties included."""
    generator = torch.Generator().manual_seed(0)
    sizes = (5, 7)
    colors = [torch.rand(2, 3, size, 4, generator=generator, dtype=torch.float64) for size in sizes]
    densities = [torch.randn(2, 3, size, 1, generator=generator, dtype=torch.float64) * 3 for size in sizes]
    depths = [torch.rand(2, 3, size, 1, generator=generator, dtype=torch.float64) * 2 + 1 for size in sizes]
    depths[1][0, 0, 2] = depths[0][0, 0, 1]  # a fine sample at a coarse one's depth
    merged = composite_merged(colors, densities, depths, -1.0)
    depths_all, order = torch.sort(torch.cat(depths, dim=-2), dim=-2)
    reference = composite(torch.cat(colors, dim=-2).gather(-2, order.expand(-1, -1, -1, 4)),
                          torch.cat(densities, dim=-2).gather(-2, order), depths_all, -1.0)
    for value, other in zip(merged, reference):
        torch.testing.assert_close(value, other, rtol=1e-12, atol=1e-14)


def test_channels_last_lookup_matches_grid_sample_values_and_gradients() -> None:
    _assert_sampler_matches(CPU)


@pytest.mark.parametrize(("jitter", "background", "warped", "lips", "upsamplings"),
                         [(True, "field", False, False, 2), (False, "field", False, False, 2),
                          (True, "plate", False, False, 2), (True, "plate", True, False, 2),
                          (True, "field", False, True, 2), (True, "plate", True, True, 1),
                          (True, "fill", True, False, 2)])
def test_fp32_fast_path_gives_the_reference_frames(jitter: bool, background: str, warped: bool, lips: bool,
                                                   upsamplings: int) -> None:
    model = _tiny_model(CPU, jitter, background, lips, upsamplings)
    (rgb_ref, depth_ref), (rgb, depth), renderer = _both(model, FastRenderConfig.for_device(CPU), warped=warped)
    assert rgb.shape == rgb_ref.shape == (5, 3, 128, 128) and not renderer.captured
    torch.testing.assert_close(rgb, rgb_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(depth, depth_ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("planes_on", [(0, 1, 2), (0,)])
def test_fast_path_renders_confined_mouth_planes_as_the_reference_does(planes_on: tuple[int, ...]) -> None:
    """`mouth_confined` planes carry a second channel set: the fast path's torch field confines it as the reference
    (`TriplaneField.sample`, which reads it only on `planes_on`) does (the Triton field:
    `test_triton_field_matches_the_reference_values_and_gradients`)."""
    model = _tiny_model(CPU, lips=True, confined=planes_on)
    (rgb_ref, depth_ref), (rgb, depth), renderer = _both(model, FastRenderConfig.for_device(CPU))
    torch.testing.assert_close(rgb, rgb_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(depth, depth_ref, rtol=0, atol=1e-4)
    assert renderer.confined == [*model.config.mouth_box, MOUTH_BOX_EDGE, *map(float, planes_on)]


def test_fast_path_renders_the_mouth_x_blur_as_the_reference_does() -> None:
    """`TriplaneTalkerConfig.mouth_x_blur` acts on the planes both paths take from `TriplaneTalker.planes`: the
    fast path's frames are the reference's, and differ from the unblurred model's."""
    model = _tiny_model(CPU, lips=True, confined=(0,))
    (plain, _), _, _ = _both(model, FastRenderConfig.for_device(CPU))
    model.config = dataclasses.replace(model.config, mouth_x_blur=2.0)
    (rgb_ref, depth_ref), (rgb, depth), _ = _both(model, FastRenderConfig.for_device(CPU))
    torch.testing.assert_close(rgb, rgb_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(depth, depth_ref, rtol=0, atol=1e-4)
    assert (rgb_ref - plain).abs().max() > 1e-3


def test_fast_path_reads_the_brows_as_the_reference_does() -> None:
    """`ConditionEncoderConfig.brows`: 8 landmark inputs reach the fast path's tokens as the reference's, from its
    compilation inputs (`example_inputs`) to the frames."""
    model = _tiny_model(CPU, brows=True)
    (rgb_ref, depth_ref), (rgb, depth), renderer = _both(model, FastRenderConfig.for_device(CPU))
    torch.testing.assert_close(rgb, rgb_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(depth, depth_ref, rtol=0, atol=1e-4)
    assert renderer.example_inputs()[3].shape[1] == 8


def test_fast_path_super_resolves_through_the_input_stack_as_the_reference_does() -> None:
    """`SuperResolutionConfig.input_blocks`: the fast path's super-resolution (channels-last) is the reference's,
    stack included, and the stack changes the frames."""
    model = _tiny_model(CPU, upsamplings=1, input_blocks=2)
    (rgb_ref, depth_ref), (rgb, depth), _ = _both(model, FastRenderConfig.for_device(CPU))
    torch.testing.assert_close(rgb, rgb_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(depth, depth_ref, rtol=0, atol=1e-4)
    (plain, _), _, _ = _both(_tiny_model(CPU, upsamplings=1), FastRenderConfig.for_device(CPU))
    assert (plain - rgb_ref).abs().max() > 1e-3


def test_fast_path_renders_identity_planes_at_twice_the_resolution_as_the_reference_does() -> None:
    """`TriplaneTalkerConfig.identity_scale` 2 with confined mouth planes: both paths take the upsampled deltaplane
    and mouth planes from `TriplaneTalker.planes` and the encoding from `encode_identity`."""
    model = _tiny_model(CPU, lips=True, confined=(0,), identity_scale=2)
    assert model.identity_planes.shape[-1] == 2 * model.config.plane_resolution
    (rgb_ref, depth_ref), (rgb, depth), _ = _both(model, FastRenderConfig.for_device(CPU))
    torch.testing.assert_close(rgb, rgb_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(depth, depth_ref, rtol=0, atol=1e-4)


def test_fast_path_empties_the_space_outside_the_box_as_the_reference_does() -> None:
    """In plate mode the field is empty outside the box, in the fast path as in the reference (the rays here run
    past the box's far side, so the frames differ from those of a field that fills it)."""
    model = _tiny_model(CPU, background="plate")
    assert model.field.empty_outside and not _tiny_model(CPU).field.empty_outside
    (rgb_ref, depth_ref), (rgb, depth), _ = _both(model, FastRenderConfig.for_device(CPU), warped=True)
    torch.testing.assert_close(rgb, rgb_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(depth, depth_ref, rtol=0, atol=1e-4)
    model.field.empty_outside = False
    (filled, _), _, _ = _both(model, FastRenderConfig.for_device(CPU), warped=True)
    assert (filled - rgb_ref).abs().max() > 1e-3


def test_bf16_fast_path_is_within_bf16_tolerance() -> None:
    model = _tiny_model(CPU)
    config = FastRenderConfig(compile_mode="none", field="torch", cuda_graph=False)
    (rgb_ref, _), (rgb, _), _ = _both(model, config)
    _assert_within_bf16(rgb, rgb_ref)


@pytest.mark.slow
def test_compiled_fast_path_matches_without_recompiling() -> None:
    """torch.compile on CPU (about a minute): same frames in fp32; the padded last batch does not recompile."""
    model = _tiny_model(CPU)
    config = FastRenderConfig(precision="32-true", compile_mode="default", field="torch", cuda_graph=False)
    with torch._dynamo.config.patch(error_on_recompile=True):
        (rgb_ref, depth_ref), (rgb, depth), _ = _both(model, config)
    torch.testing.assert_close(rgb, rgb_ref, rtol=0, atol=1e-4)
    torch.testing.assert_close(depth, depth_ref, rtol=0, atol=1e-3)


def test_config_checks() -> None:
    model = _tiny_model(CPU)
    with pytest.raises(ValueError, match="CUDA"):
        FastRenderer(model, 1, FastRenderConfig())
    cuda = FastRenderConfig.for_device(torch.device("cuda"))
    assert cuda.cuda_graph and cuda.precision == "bf16-mixed" and cuda.compile_mode != "none"


BOX = [-0.2, 0.2, -0.3, 0.1, -0.1, 0.3, 0.05]
"""A box (x0, x1, y0, y1, z0, z1) and edge holding some of `_field_inputs`' points, for `confined` planes."""
CONFINED = [[], [*BOX, 0.0, 1.0, 2.0], [*BOX, 0.0], [*BOX, 2.0, 1.0]]
"""`Confinement.arguments`: none, the box's second set on all three planes, on the xy plane, on the zy and xz."""


@pytest.mark.parametrize("confined", CONFINED)
@pytest.mark.parametrize("added", [False, True])
def test_field_reference_is_the_lookup_and_the_osg_decoder(confined: list[float], added: bool) -> None:
    """`triplane_field_reference` (the fused kernel's reference) against `TriplaneField.forward`, which decodes
    `sample_triplane` with `OSGDecoder`: `confined` planes through `TriplaneField.sample` (which samples the second
    set only on the confined planes, where the reference samples both sets everywhere and zeroes the others' second
    set); `added` features (the torso's) summed before the decoder."""
    planes, points, decoder = _field_inputs(CPU, torch.float64, confined=bool(confined))
    extra = _added_features(points) if added else None
    reference = triplane_field_reference(planes.permute(0, 1, 3, 4, 2), points, *_decoder_weights(decoder), 1.0,
                                         confined, extra)
    field = TriplaneField(box_warp=1.0, confined=Confinement.from_arguments(confined) if confined else None)
    field.decoder = decoder
    expected = field(planes, points, added=extra)
    for value, other in zip(reference, expected):
        torch.testing.assert_close(value, other, rtol=1e-10, atol=1e-12)
    inputs = (planes, points) if extra is None else (planes, points, extra)
    grads = torch.autograd.grad(sum(v.sum() for v in reference), inputs)
    grads_expected = torch.autograd.grad(sum(v.sum() for v in expected), inputs)
    for grad, other in zip(grads, grads_expected):
        torch.testing.assert_close(grad, other, rtol=1e-9, atol=1e-11)


def _added_features(points: torch.Tensor) -> torch.Tensor:
    """Decoder inputs [B, N, 32] of the points' dtype and device, as a torso's lookup gives, with gradients."""
    generator = torch.Generator().manual_seed(5)
    values = 0.5 * torch.randn(*points.shape[:2], 32, dtype=points.dtype, generator=generator)
    return values.to(points.device).requires_grad_()


def _field_inputs(device: torch.device, dtype: torch.dtype, confined: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor, OSGDecoder]:
    """Planes [2, 3, 32, 10, 12] (H ≠ W; 64 channels when `confined`), points partly outside the box, a decoder with
    every weight perturbed."""
    generator = torch.Generator().manual_seed(0)
    planes = torch.randn(2, 3, 64 if confined else 32, 10, 12, dtype=dtype, generator=generator)
    points = (torch.rand(2, 300, 3, dtype=dtype, generator=generator) - 0.5) * 1.3
    decoder = OSGDecoder().to(dtype)
    with torch.no_grad():
        for parameter in decoder.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, dtype=dtype, generator=generator))
    return planes.to(device).requires_grad_(), points.to(device).requires_grad_(), decoder.to(device)


def _decoder_weights(decoder: OSGDecoder) -> tuple[torch.Tensor, ...]:
    return decoder.net[0].weight, decoder.net[0].bias, decoder.net[2].weight, decoder.net[2].bias


@pytest.mark.cuda
@pytest.mark.parametrize("confined", CONFINED)
@pytest.mark.parametrize("added", [False, True])
def test_triton_field_matches_the_reference_values_and_gradients(confined: list[float], added: bool,
                                                                 triton_device: torch.device) -> None:
    device = triton_device
    from deltaplane.triton_field import triplane_field

    planes, points, decoder = _field_inputs(device, torch.float32, confined=bool(confined))
    planes_cl = planes.permute(0, 1, 3, 4, 2).contiguous()
    weights = _decoder_weights(decoder)
    extra = _added_features(points) if added else None
    expected = triplane_field_reference(planes_cl, points, *weights, 1.0, confined, extra)
    for plane_dtype, tolerance in ((torch.float32, 5e-3), (torch.bfloat16, 2e-2)):  # TF32 products; bf16 planes
        with torch.no_grad():
            values = triplane_field(planes_cl.to(plane_dtype), points, *weights, 1.0, confined, extra)
        for value, other in zip(values, expected):
            assert value.dtype == torch.float32 and value.shape == other.shape
            assert (value - other).abs().max().item() < tolerance * other.abs().max().item()
    tensors = (planes_cl, points, *weights) if extra is None else (planes_cl, points, *weights, extra)
    inputs = [tensor.detach().double().requires_grad_() for tensor in tensors]
    outputs = triplane_field(*inputs[:6], 1.0, confined, *inputs[6:])
    outputs_reference = triplane_field_reference(*inputs[:6], 1.0, confined, *inputs[6:])
    head = [torch.randn_like(value) for value in outputs_reference]
    grads = torch.autograd.grad(outputs, inputs, head)
    grads_reference = torch.autograd.grad(outputs_reference, inputs, head)
    for grad, other in zip(grads, grads_reference):  # the op's outputs, hence their gradients, are float32
        torch.testing.assert_close(grad, other, rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
def test_cuda_lookup_matches_grid_sample_values_and_gradients() -> None:
    _needs_cuda()
    _assert_sampler_matches(torch.device("cuda"))


@pytest.mark.cuda
@pytest.mark.parametrize(("background", "warped", "lips", "upsamplings", "confined", "torso", "jitter"),
                         [("field", False, False, 2, (), False, True), ("plate", False, False, 2, (), False, True),
                          ("plate", True, False, 2, (), False, True), ("field", False, True, 2, (), False, True),
                          ("plate", True, True, 1, (), False, True), ("field", False, True, 2, (0, 1, 2), False, True),
                          ("field", False, True, 2, (0,), False, True), ("fill", True, False, 2, (), False, True),
                          ("field", False, True, 2, (0,), True, True), ("fill", True, False, 2, (), True, True),
                          pytest.param("field", False, True, 2, (0,), False, False, id="fixed_samples")])
def test_cuda_fast_path_matches_the_reference_within_bf16(background: str, warped: bool, lips: bool,
                                                          upsamplings: int, confined: tuple[int, ...],
                                                          torso: bool, jitter: bool) -> None:
    """The default CUDA configuration: bf16, channels-last, torch.compile, one CUDA graph (in plate and fill mode
    with the field emptied outside the box; `confined`: the planes whose mouth planes are confined to their box;
    `torso`: a torso of its own; `jitter` off: the fixed samples that inference uses by default, drawn as expanded
    views, which a CUDA graph's static inputs must not be)."""
    _needs_cuda()
    model = _tiny_model(torch.device("cuda"), jitter=jitter, background=background, lips=lips,
                        upsamplings=upsamplings, confined=confined, torso=torso)
    (rgb_ref, depth_ref), (rgb, depth), renderer = _both(model, FastRenderConfig.for_device(torch.device("cuda")),
                                                         warped=warped)
    assert renderer.captured
    _assert_within_bf16(rgb, rgb_ref)
    assert (depth - depth_ref).abs().median() < 0.01


def test_bench_cli_runs_both_paths_side_by_side(tiny_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "bench.json"
    main(["bench", str(tiny_run), "--batch", "1,2", "--frames", "3", "--device", "cpu", "--json", str(output)])
    table = capsys.readouterr().out
    assert "device: cpu" in table and "frames/s" in table and "max|diff|" in table
    results = json.loads(output.read_text())["results"]
    assert [(r["path"], r["batch"]) for r in results] == [("reference", 1), ("fast", 1), ("reference", 2),
                                                           ("fast", 2)]
    for result in results:
        assert result["frames"] == 3 and result["frames_per_second"] > 0
        assert result["latency_p99_ms"] >= result["latency_p50_ms"] > 0
        assert result["max_abs_diff"] < 1e-4  # on CPU the fast path is the reference's fp32 maths


def test_bench_needs_a_run_or_random_weights() -> None:
    with pytest.raises(InputError, match="random-weights"):
        api.bench(None, device="cpu")
    report = api.bench(None, batch=(2,), frames=2, device="cpu", preset="tiny", random_weights=True)
    assert [r.path for r in report.results] == ["reference", "fast"]
    with pytest.raises(InputError, match="background"):
        api.bench(None, device="cpu", random_weights=True, background="sky")


def test_random_weights_in_lip_mode_snap_among_a_full_bank() -> None:
    """`deltaplane bench --random-weights` with the `fast` preset (lip mode, snapped): the lip basis is fitted to
    random mouths, so the snap blends a full bank, as in a trained model, and the lip tokens are finite (with an
    empty bank they were NaN)."""
    model = random_weights_model("fast", CPU)
    assert int(model.lips.bank_valid.sum()) == model.config.lips.bank_size
    assert torch.isfinite(model.audio_codes(torch.randn(3, 8, 16, model.config.audio.feature_dim))).all()


def test_bench_times_the_plate_background() -> None:
    report = api.bench(None, batch=(1,), frames=2, device="cpu", preset="tiny", random_weights=True,
                       background="plate")
    assert "background plate" in report.model
    assert report.results[1].max_abs_diff < 1e-4  # the fast path composites the plate as the reference does


def test_bench_times_a_torso_of_its_own(tiny_run: Path) -> None:
    report = api.bench(None, batch=(1,), frames=2, device="cpu", preset="tiny", random_weights=True, torso=True)
    assert "torso" in report.model
    assert report.results[1].max_abs_diff < 1e-4
    with pytest.raises(InputError, match="--torso needs --random-weights"):
        api.bench(tiny_run, device="cpu", torso=True)


def test_render_engines_write_the_same_video(tiny_run: Path, tmp_path: Path) -> None:
    import numpy as np

    from deltaplane.audio.io import load_audio, write_wav
    from deltaplane.checkpoint import read_run_config
    from deltaplane.media.video import iter_frames

    speech = tmp_path / "speech.wav"
    write_wav(speech, load_audio(Path(read_run_config(tiny_run)["dataset"]) / "audio.wav")[:16000])
    videos = {engine: api.render(tiny_run, speech, tmp_path / f"{engine}.mp4", camera="orbit", watermark=False,
                                 device="cpu", progress=False, engine=engine, attention=tmp_path / engine)
              for engine in ("reference", "fast")}
    assert sorted(p.name for p in (tmp_path / "fast").iterdir()) == ["attention.npz", "attention_000000.png"]
    frames = {engine: np.stack(list(iter_frames(path))) for engine, path in videos.items()}
    assert frames["fast"].shape == frames["reference"].shape == (25, 128, 128, 3)
    # on CPU the fast path is the reference's fp32 maths (summed in another order: a few pixels round differently)
    difference = np.abs(frames["fast"].astype(int) - frames["reference"].astype(int))
    assert difference.max() <= 2 and (difference > 0).mean() < 1e-3


@pytest.mark.cuda
def test_triton_fast_path_renders_a_torso_of_its_own_as_the_reference_does(triton_device: torch.device) -> None:
    """The Triton field and the Triton lookup of the torso's planes in fp32 (CUDA, or the CPU under
    `TRITON_INTERPRET=1`): the reference's frames within the kernels' TF32 products."""
    model = _tiny_model(triton_device, torso=True)
    config = FastRenderConfig(precision="32-true", channels_last=False, compile_mode="none", field="triton",
                              cuda_graph=False)
    (rgb_ref, depth_ref), (rgb, depth), _ = _both(model, config, num_frames=2)
    _assert_within_bf16(rgb, rgb_ref)
    assert (depth - depth_ref).abs().median() < 0.01


@pytest.mark.parametrize(("background", "warped"), [("field", False), ("fill", True)])
def test_fast_path_renders_a_torso_of_its_own_as_the_reference_does(background: str, warped: bool) -> None:
    """`TriplaneTalkerConfig.torso_follow`: the torso's planes, looked up in each frame's torso frame (from its
    angle token), add to the head's before the decoder, in the fast path as in the reference; the frames depend
    on the torso's planes (the Triton field's `added`: `test_triton_field_matches_the_reference_values_and_gradients`,
    whole clips on CUDA: `test_cuda_fast_path_matches_the_reference_within_bf16`)."""
    model = _tiny_model(CPU, background=background, torso=True)
    (rgb_ref, depth_ref), (rgb, depth), _ = _both(model, FastRenderConfig.for_device(CPU), warped=warped)
    torch.testing.assert_close(rgb, rgb_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(depth, depth_ref, rtol=0, atol=1e-4)
    with torch.no_grad():
        model.torso_planes.zero_()
    _, (without_torso, _), _ = _both(model, FastRenderConfig.for_device(CPU), warped=warped)
    assert (without_torso - rgb).abs().max() > 1e-2
