"""The tiny triplane talker: shapes, identity at init, gradients."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from deltaplane import losses
from deltaplane.data.dataset import load_clip, make_batch
from deltaplane.geometry.cameras import orbit_cameras
from deltaplane.fields.triplane import blur_along_x, box_weights
from deltaplane.models.triplane_talker import MOUTH_BOX_EDGE, TriplaneTalker
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


def test_ray_samples_are_random_in_training_and_fixed_in_eval_mode(model: TriplaneTalker) -> None:
    """Training jitters the samples (EG3D); a model in eval mode renders the same frame whatever the generator, so a
    render is reproducible and holds still, unless `VolumeRenderConfig.jitter_at_inference` asks for EG3D's random
    samples there too."""
    cameras = orbit_cameras(torch.tensor([0.2]), torch.tensor([-0.1]), 128, 128)

    def depths(talker: TriplaneTalker, seed: int) -> torch.Tensor:
        with torch.no_grad():
            return talker(cameras, _conditions(1, 0), generator=torch.Generator().manual_seed(seed))[0].depth

    assert not torch.allclose(depths(model, 1), depths(model, 2))
    model.eval()
    torch.testing.assert_close(depths(model, 1), depths(model, 2), rtol=0, atol=0)
    model.config = replace(model.config, volume=replace(model.config.volume, jitter_at_inference=True))
    assert not torch.allclose(depths(model, 1), depths(model, 2))


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


def test_a_torso_of_its_own_adds_its_planes_in_the_torsos_frame(model: TriplaneTalker) -> None:
    """`torso_follow`: with its planes at zero the model renders as the head alone; with them, what it renders
    depends on the angle tokens through the torso's frame (a head-only model's field does not), the torso planes
    learn, and a render without the frames' torso transforms is refused."""
    torso = TriplaneTalker(dataclasses.replace(model.config, torso_follow=(0.1, 0.6)))
    torso.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        torso.torso_planes.zero_()
    cameras = orbit_cameras(torch.tensor([0.1, -0.2]), torch.zeros(2), 128, 128)
    model.eval()
    torso.eval()
    conditions = _conditions(2, 0)
    planes, _ = model.planes(model.tokens(conditions))
    with torch.no_grad():
        alone = model.render(planes, cameras)
        torch.testing.assert_close(torso.render(planes, cameras, torso=torso.torso_transforms(conditions.angles)).rgb,
                                   alone.rgb)
        torso.torso_planes.normal_(0.0, 0.5)
        turned = replace(conditions, angles=conditions.angles + torch.tensor([0.2, 0.3, 0.0]))
        moved = [torso.render(planes, cameras, torso=torso.torso_transforms(c.angles)).rgb
                 for c in (conditions, turned)]
    assert not torch.allclose(*moved)
    with pytest.raises(ValueError, match="torso transforms"):
        torso.render(planes, cameras)
    torso.train()
    output, _ = torso(cameras, conditions)
    output.rgb.mean().backward()
    assert torso.torso_planes.grad is not None and torso.torso_planes.grad.abs().sum() > 0


@pytest.mark.cuda
def test_torso_transforms_stay_float32_under_cuda_autocast(model: TriplaneTalker) -> None:
    """The trainer's bf16 autocast must not reach the torso's camera math: CUDA's `linalg.inv` has no bf16 kernel
    (session 36's first torso run on the H200 died on it; CPU autocast runs `linalg.inv` in float32)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torso = TriplaneTalker(dataclasses.replace(model.config, torso_follow=(0.1, 0.6))).cuda()
    angles = torch.tensor([[0.3, -0.2, 0.05], [-0.4, 0.1, 0.0]], device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        autocast = torso.torso_transforms(angles)
    assert autocast.dtype == torch.float32
    torch.testing.assert_close(autocast, torso.torso_transforms(angles))


def test_isolated_lower_face_rays_give_the_identity_planes_no_gradient(model: TriplaneTalker) -> None:
    """`isolate_lower_face`: the render is unchanged, but what the lower-face rays see can only be changed through
    the deltaplane (and the shared decoder), never by storing it in the static identity planes."""
    isolating = TriplaneTalker(dataclasses.replace(model.config, isolate_lower_face=1))
    isolating.load_state_dict(model.state_dict())
    cameras = orbit_cameras(torch.tensor([0.1, -0.2]), torch.zeros(2), 128, 128)
    lower_face = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
    lower_face[:, :, 20:24, 12:20] = True
    isolated = torch.zeros_like(lower_face)  # the mask dilated by one pixel
    isolated[:, :, 19:25, 11:21] = True

    def identity_gradient(talker: TriplaneTalker, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        talker.zero_grad()
        output, _ = talker(cameras, _conditions(2, 0), generator=torch.Generator().manual_seed(1),
                           lower_face=lower_face)
        (output.rgb_raw * pixels).sum().backward()
        return output.rgb_raw.detach(), talker.identity_planes.grad.clone()

    plain_image, plain_inside = identity_gradient(model, isolated)
    image, inside = identity_gradient(isolating, isolated)
    torch.testing.assert_close(image, plain_image)
    assert plain_inside.abs().sum() > 0 and inside.abs().max() == 0
    assert isolating.field.decoder.net[0].weight.grad.abs().sum() > 0
    _, plain_outside = identity_gradient(model, ~isolated)
    _, outside = identity_gradient(isolating, ~isolated)
    torch.testing.assert_close(outside, plain_outside)


def test_mouth_planes_start_at_zero_and_let_the_audio_move_the_render(model: TriplaneTalker) -> None:
    """`mouth_planes`: K full-resolution planes mixed by the audio token. Zero at init (the render cannot hear the
    audio yet); trained towards a target that differs with the audio code, they make the render differ with it,
    inside the mouth box only."""
    torch.manual_seed(0)
    talker = TriplaneTalker(dataclasses.replace(model.config, mouth_planes=4))
    cameras = orbit_cameras(torch.zeros(2), torch.zeros(2), 128, 128)
    conditions = _conditions(2, 0)
    codes = torch.randn(2, 64, generator=torch.Generator().manual_seed(3))
    planes, delta = talker.planes(talker.tokens(conditions, audio_code=codes))
    assert torch.count_nonzero(delta) == 0
    # stored only where the mouth box reaches: a fraction of each full plane
    assert [tuple(p.shape[:2]) for p in talker.mouth_planes] == [(4, 32)] * 3
    assert sum(p[0, 0].numel() for p in talker.mouth_planes) < 0.5 * 3 * talker.identity_planes[0, 0].numel()
    # train only the mouth planes and their mix, so any audio dependence must come through them
    optimizer = torch.optim.Adam([*talker.mouth_planes, *talker.mouth_mix.parameters()], lr=3e-2)
    target = torch.stack([torch.full((3, 32, 32), -0.5), torch.full((3, 32, 32), 0.5)])
    losses = []
    for _ in range(10):
        planes, _ = talker.planes(talker.tokens(conditions, audio_code=codes))
        loss = (talker.render(planes, cameras, torch.Generator().manual_seed(1)).rgb_raw - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
    with torch.no_grad():  # the same frames with their audio codes swapped
        _, heard = talker.planes(talker.tokens(conditions, audio_code=codes))
        _, swapped = talker.planes(talker.tokens(conditions, audio_code=codes.flip(0)))
    assert (heard - swapped).abs().mean() > 0.5 * heard.abs().mean() > 0
    # they act only around the canonical mouth (`mouth_box`); the predictor's own deltaplane is still zero here
    outside = box_weights(talker.config.mouth_box, talker.config.plane_resolution, talker.config.box_warp,
                          MOUTH_BOX_EDGE) == 0
    assert outside.float().mean() > 0.5 and heard.masked_select(outside[None].expand_as(heard)).abs().max() == 0


def test_audio_in_mouth_box_moves_nothing_outside_the_box(model: TriplaneTalker) -> None:
    """`audio_in_mouth_box`: the deltaplane predictor hears a zero audio token, so two audio codes give planes that
    differ only where the mouth planes act; without it the predictor's deltaplane differs everywhere (the torso that
    moves with the lips in plate mode). The other tokens still reach the predictor."""
    torch.manual_seed(0)
    codes = torch.randn(2, 64, generator=torch.Generator().manual_seed(3))
    conditions = _conditions(2, 0)
    outside = box_weights(model.config.mouth_box, model.config.plane_resolution, model.config.box_warp,
                          MOUTH_BOX_EDGE)[None] == 0  # [1, 3, 1, H, W]
    changes = {}
    for boxed in (False, True):
        torch.manual_seed(1)
        talker = TriplaneTalker(dataclasses.replace(model.config, mouth_planes=3, audio_in_mouth_box=boxed))
        with torch.no_grad():  # a trained-looking model: neither the deltaplane nor the mouth planes zero
            for parameter in [*talker.predictor.parameters(), *talker.mouth_planes]:
                parameter.add_(0.1 * torch.randn_like(parameter))
            same = talker.tokens(conditions, audio_code=codes[:1].expand(2, -1))
            planes, _ = talker.planes(talker.tokens(conditions, audio_code=codes))
            one_code, _ = talker.planes(same)
            if boxed:  # the other tokens still reach the predictor: another eye changes the planes everywhere
                assert talker.heard(same)[:, 0].abs().max() == 0
                blink = talker.tokens(replace(conditions, eye=conditions.eye.flip(0)),
                                      audio_code=codes[:1].expand(2, -1))
                assert (talker.planes(blink)[0] - one_code).abs().masked_select(outside.expand_as(one_code)).max() > 0
        change = (planes[1] - one_code[1]).abs()  # frame 1 with its own code against frame 0's
        changes[boxed] = (change.masked_select(outside[0].expand_as(change)).max().item(),
                          change.masked_select(~outside[0].expand_as(change)).mean().item())
    assert changes[True][0] == 0 and changes[True][1] > 0
    assert changes[False][0] > 0
    with pytest.raises(ValueError, match="audio_in_mouth_box"):
        dataclasses.replace(model.config, audio_in_mouth_box=True)  # no mouth planes: the audio would not be heard


def test_mouth_planes_left_off_the_xz_plane_do_not_reach_below_the_box(model: TriplaneTalker) -> None:
    """`mouth_planes_on`: a plane's texels reach every point projecting onto them, so mouth planes on all three
    planes also act below the mouth box, in the xz plane's prism (here a point on the chest, in front of the body,
    under the mouth); left off the xz plane they store nothing there and act only at the box's heights. The mouth
    itself still hears them."""
    from deltaplane.fields.triplane import sample_triplane

    chest, mouth = torch.tensor([[[0.0, -0.5, 0.2]]]), torch.tensor([[[0.0, -0.1, 0.2]]])
    reach = {}
    for planes_on in ((0, 1, 2), (0, 2)):
        talker = TriplaneTalker(dataclasses.replace(model.config, mouth_planes=2, mouth_planes_on=planes_on))
        with torch.no_grad():
            for stored in talker.mouth_planes:
                stored.copy_(torch.randn(stored.shape, generator=torch.Generator().manual_seed(0)))
            delta = talker.mouth_delta(torch.ones(1, 2))
        reach[planes_on] = [sample_triplane(delta, point, talker.config.box_warp).abs().max().item()
                            for point in (chest, mouth)]
        assert [tuple(p.shape[2:]) == (0, 0) for p in talker.mouth_planes] == [plane not in planes_on
                                                                              for plane in range(3)]
    assert reach[(0, 1, 2)][0] > 0 and reach[(0, 2)][0] == 0
    assert reach[(0, 2)][1] > 0
    with pytest.raises(ValueError, match="mouth_planes_on"):
        dataclasses.replace(model.config, mouth_planes_on=(3,))


def test_confined_mouth_planes_act_inside_the_box_and_nowhere_else(model: TriplaneTalker) -> None:
    """`mouth_confined`: the mouth planes travel as a second channel set that each point weights by its 3D box
    weight. Beside the face at the mouth's height and depth (outside the box, inside the zy plane's prism) the
    field is what it is without mouth planes; unconfined, the zy plane's mouth planes reach it (the face-wide line
    of docs/lip-motion.md "Run 15"). At the mouth, confined and unconfined agree."""

    points = torch.tensor([[[0.4, -0.1, 0.2], [0.0, -0.1, 0.2]]])  # beside the face; the mouth
    codes = torch.randn(1, 64, generator=torch.Generator().manual_seed(3))

    def features(confined: bool, silent: bool = False) -> torch.Tensor:
        torch.manual_seed(0)  # the same weights whatever the option: it adds no parameter
        talker = TriplaneTalker(dataclasses.replace(model.config, mouth_planes=2, mouth_confined=confined))
        with torch.no_grad():
            for stored in talker.mouth_planes:
                stored.copy_(torch.zeros(stored.shape) if silent
                             else torch.randn(stored.shape, generator=torch.Generator().manual_seed(0)))
            planes, delta = talker.planes(talker.tokens(_conditions(1, 0), audio_code=codes))
            assert planes.shape[2] == delta.shape[2] == talker.config.plane_channels * (2 if confined else 1)
            return talker.field.sample(planes, points)[0]

    silent, free, confined = features(False, silent=True), features(False), features(True)
    assert (free[0] - silent[0]).abs().max() > 0.1
    torch.testing.assert_close(confined[0], silent[0])
    torch.testing.assert_close(confined[1], free[1])
    assert (confined[1] - silent[1]).abs().max() > 0.1
    with pytest.raises(ValueError, match="mouth_confined"):
        dataclasses.replace(model.config, mouth_confined=True)  # no mouth planes to confine


def test_mouth_planes_stored_in_the_box_equal_full_planes_times_the_box(model: TriplaneTalker) -> None:
    """The cropped storage is exact: padding the stored texels back into full planes and masking them with the full
    box weights gives the same deltaplane (the reference of `TriplaneTalker.mouth_delta`)."""
    talker = TriplaneTalker(dataclasses.replace(model.config, mouth_planes=3))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for stored in talker.mouth_planes:
            stored.copy_(torch.randn(stored.shape, generator=generator))
    weights = torch.randn(2, 3, generator=generator)
    size = talker.config.plane_resolution
    full = torch.zeros(3, 3, talker.config.plane_channels, size, size)  # [K, 3, C, H, W]
    for plane, (r0, r1, c0, c1) in enumerate(talker.mouth_rectangles):
        full[:, plane, :, r0:r1, c0:c1] = talker.mouth_planes[plane].detach()
    mask = box_weights(talker.config.mouth_box, size, talker.config.box_warp, MOUTH_BOX_EDGE)  # [3, 1, H, W]
    reference = torch.einsum("bk,kpchw->bpchw", weights, full) * mask
    torch.testing.assert_close(talker.mouth_delta(weights), reference)


def test_delta_tv_smooths_the_mouth_planes_for_mixes_it_never_saw(model: TriplaneTalker,
                                                                   synthetic_dataset: Path) -> None:
    """`LossWeights.delta_tv`: rough blendshapes (texel noise) under a data term that pins only each taught mix's
    mean stay rough without the term; with it the mouth planes themselves turn smooth, so a mix never taught (a
    snapped lip vector at inference) is smooth too, at the amplitude the data asks for. Off at weight 0."""
    _, clip = load_clip(synthetic_dataset, "train", size=model.config.output_resolution)
    batch = make_batch(clip, torch.tensor([0, 5]), model.config.render_resolution)
    output, _ = model(batch.cameras, batch.conditions)  # the frame terms: only the deltaplane matters here
    taught = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))  # spans the three blendshapes
    unseen = torch.randn(1, 3, generator=torch.Generator().manual_seed(2))
    roughness = {}
    for weight in (0.0, 100.0):
        loss = dataclasses.replace(model.config.loss, delta_tv=weight)
        # 128² texels: the box spans tens of them, as in the `fast` preset (at 64² its faded rim is most of it)
        talker = TriplaneTalker(dataclasses.replace(model.config, plane_resolution=128, mouth_planes=3, loss=loss))
        with torch.no_grad():
            for stored in talker.mouth_planes:
                stored.copy_(torch.randn(stored.shape, generator=torch.Generator().manual_seed(0)))
        optimizer = torch.optim.Adam(talker.mouth_planes.parameters(), lr=0.1)
        for _ in range(60):
            delta = talker.mouth_delta(taught)
            data = (delta.mean(dim=(1, 2, 3, 4)) - 0.01 * taught[:, 0]).square().sum() * 1e4
            optimizer.zero_grad()
            (data + talker.loss_terms(output, delta, batch).get("delta_tv", 0.0)).backward()
            optimizer.step()
        with torch.no_grad():
            mixed = talker.mouth_delta(unseen)
        assert data.item() < 0.01
        # total variation per unit of amplitude: ~2.9 for texel noise, far less for a smooth field
        roughness[weight] = (losses.plane_total_variation(mixed) / mixed.abs().mean()).item()
    assert roughness[0.0] > 2.5 and roughness[100.0] < 0.5 * roughness[0.0], roughness
    assert "delta_tv" not in model.loss_terms(output, delta.detach(), batch)


@pytest.mark.parametrize("confined", [False, True])
def test_closed_mouth_x_smooths_the_xy_plane_in_the_mouth_footprint_of_closed_frames(
        model: TriplaneTalker, synthetic_dataset: Path, confined: bool) -> None:
    """`LossWeights.closed_mouth_x`: stripes along x on the xy plane inside the mouth planes' footprint (teeth drawn
    through closed lips), in the identity plane or in the mouth planes (confined or not), cost on frames whose
    tracked mouth is closed and nothing on open ones; steps on the term smooth them there and touch no identity texel
    outside the footprint. Off at weight 0; it needs mouth planes on the xy plane."""
    _, clip = load_clip(synthetic_dataset, "train", size=model.config.output_resolution)
    batch = make_batch(clip, torch.tensor([0, 5]), model.config.render_resolution)
    loss = dataclasses.replace(model.config.loss, closed_mouth_x=1.0)
    talker = TriplaneTalker(dataclasses.replace(model.config, mouth_planes=2, mouth_confined=confined, loss=loss))
    size = talker.config.plane_resolution
    stripes = (torch.arange(size) % 2).float() * 0.5  # along x (the xy plane's columns)
    shapes = batch.mouth_shape.view(2, 20, 2)
    closed, opened = shapes.clone(), shapes.clone()
    closed[:, 17:20] = shapes[:, [15, 14, 13]]  # inner lower lip (65, 66, 67) onto the upper (63, 62, 61)
    opened[:, 17:20, 1] = shapes[:, [15, 14, 13], 1] + 0.3
    closed, opened = closed.reshape(2, 40), opened.reshape(2, 40)

    def variation(mouths: torch.Tensor) -> torch.Tensor:
        return talker.closed_mouth_x_variation(talker.planes(talker.tokens(batch.conditions, mouth_shape=mouths))[1],
                                               mouths)

    with torch.no_grad():
        plain = variation(closed).item()  # the random identity planes' own
        talker.mouth_planes[0] += 100 * stripes[-talker.mouth_planes[0].shape[-1]:]  # mixed by small weights at init
        in_mouth_planes = variation(closed).item()
        talker.mouth_planes[0].zero_()
        talker.identity_planes[0] += stripes
    assert in_mouth_planes > plain + 0.05
    assert variation(opened).item() == 0
    before = variation(closed).item()
    assert before > 0.2
    identity = talker.identity_planes.detach().clone()
    optimizer = torch.optim.Adam([talker.identity_planes], lr=0.02)
    for _ in range(30):
        optimizer.zero_grad()
        term = variation(closed)
        term.backward()
        optimizer.step()
    assert term.item() < 0.5 * before
    r0, r1, c0, c1 = talker.mouth_rectangles[0]
    moved = (talker.identity_planes.detach() - identity).abs().amax(dim=1)  # [3, H, W]
    assert moved[0, r0:r1, c0:c1].max() > 0.01
    moved[0, r0:r1, c0:c1] = 0
    assert moved.max() == 0  # nothing outside the footprint, nor on the other planes
    batch = dataclasses.replace(batch, mouth_shape=closed)
    output, delta = talker(batch.cameras, batch.conditions, mouth_shape=closed)
    torch.testing.assert_close(talker.loss_terms(output, delta, batch)["closed_mouth_x"],
                               talker.closed_mouth_x_variation(delta, closed))
    assert "closed_mouth_x" not in model.loss_terms(*model(batch.cameras, batch.conditions), batch)
    with pytest.raises(ValueError, match="closed_mouth_x"):
        dataclasses.replace(model.config, mouth_planes=0, loss=loss)


def test_closed_mouth_box_is_the_mouth_box_l1_of_the_closed_frames(model: TriplaneTalker,
                                                                     synthetic_dataset: Path) -> None:
    """`LossWeights.closed_mouth_box`: the mouth-box L1 with each frame's errors weighted by how closed its tracked
    mouth is: the whole term for a batch of closed mouths, nothing for open ones, half of it when one of two frames
    is closed (its box pixels still count in the mean). Off at weight 0."""
    _, clip = load_clip(synthetic_dataset, "train", size=model.config.output_resolution)
    batch = make_batch(clip, torch.tensor([0, 5]), model.config.render_resolution)
    shapes = batch.mouth_shape.view(2, 20, 2)
    closed, opened = shapes.clone(), shapes.clone()
    closed[:, 17:20] = shapes[:, [15, 14, 13]]  # inner lower lip (65, 66, 67) onto the upper (63, 62, 61)
    opened[:, 17:20, 1] = shapes[:, [15, 14, 13], 1] + 0.3
    closed, opened = closed.reshape(2, 40), opened.reshape(2, 40)
    talker = TriplaneTalker(dataclasses.replace(model.config, loss=dataclasses.replace(
        model.config.loss, closed_mouth_box=2.0)))
    with torch.no_grad():
        output, delta = talker(batch.cameras, batch.conditions)

        def term(mouths: torch.Tensor) -> torch.Tensor:
            return talker.loss_terms(output, delta, dataclasses.replace(batch, mouth_shape=mouths))["closed_mouth_box"]

        whole = 2.0 * losses.masked_l1(output.rgb, batch.images, batch.mouth_box)
        assert batch.mouth_box.any() and whole > 0
        torch.testing.assert_close(term(closed), whole)
        assert term(opened).item() == 0
        one_closed = torch.stack((closed[0], opened[1]))
        expected = 2.0 * (output.rgb[:1] - batch.images[:1]).abs().mul(batch.mouth_box[:1]).sum() / (
            3 * batch.mouth_box.sum())
        torch.testing.assert_close(term(one_closed), expected)
        assert "closed_mouth_box" not in model.loss_terms(output, delta, batch)



def test_eyes_box_term_is_the_l1_inside_the_brows_and_eyes_box(model: TriplaneTalker, synthetic_dataset: Path) -> None:
    """`LossWeights.eyes_box`: its weight times the super-resolved L1 over the batch's eyes-box pixels alone (an
    error outside the box does not change it); off at weight 0."""
    _, clip = load_clip(synthetic_dataset, "train", size=model.config.output_resolution)
    batch = make_batch(clip, torch.tensor([0, 5]), model.config.render_resolution)
    talker = TriplaneTalker(dataclasses.replace(model.config, loss=dataclasses.replace(model.config.loss,
                                                                                        eyes_box=3.0)))
    with torch.no_grad():
        output, delta = talker(batch.cameras, batch.conditions)
        term = talker.loss_terms(output, delta, batch)["eyes_box"]
        box = batch.eyes_box.expand_as(output.rgb)
        assert batch.eyes_box.any() and not batch.eyes_box.all()
        torch.testing.assert_close(term, 3.0 * (output.rgb - batch.images).abs()[box].mean())
        elsewhere = dataclasses.replace(batch, images=torch.where(box, batch.images, batch.images + 0.5))
        torch.testing.assert_close(talker.loss_terms(output, delta, elsewhere)["eyes_box"], term)
        assert "eyes_box" not in model.loss_terms(output, delta, batch)

def test_mouth_x_blur_blurs_the_rendered_xy_plane_in_the_mouth_footprint_outside_training(
        model: TriplaneTalker) -> None:
    """`TriplaneTalkerConfig.mouth_x_blur`: in eval mode the rendered planes are `blur_along_x` of the xy plane
    over the mouth box's footprint (texels outside it and the other planes as they were), so the rendered mouth
    changes; in training mode and at 0 the planes are untouched. It needs a mouth box."""
    size = model.config.plane_resolution
    with torch.no_grad():
        model.identity_planes[0] += (torch.arange(size) % 2).float()  # stripes along x everywhere on the xy plane
    blurred = TriplaneTalker(dataclasses.replace(model.config, mouth_x_blur=2.0))
    blurred.load_state_dict(model.state_dict())
    tokens = model.tokens(_conditions(2, 0))
    model.eval(), blurred.eval()
    with torch.no_grad():
        plain, _ = model.planes(tokens)
        smoothed, delta = blurred.planes(tokens)
        footprint = box_weights(model.config.mouth_box, size, model.config.box_warp, MOUTH_BOX_EDGE)[0, 0]
        torch.testing.assert_close(smoothed, blur_along_x(plain, 0, footprint, 2.0))
        torch.testing.assert_close(delta, model.planes(tokens)[1])  # the deltaplane itself is not blurred
        changed = (smoothed - plain).abs().amax(dim=(0, 2))  # [3, H, W]
        assert changed[0][footprint > 0.5].min() > 0.1 and changed[0][footprint == 0].max() == 0
        assert changed[1:].max() == 0
        cameras = orbit_cameras(torch.zeros(2), torch.zeros(2), 128, 128)
        rgb = [talker.render(planes, cameras, generator=torch.Generator().manual_seed(0)).rgb
               for talker, planes in ((model, plain), (blurred, smoothed))]
        assert (rgb[0] - rgb[1]).abs().max() > 1e-3
        blurred.train()
        torch.testing.assert_close(blurred.planes(tokens)[0], plain)  # training sees the planes as they are
    with pytest.raises(ValueError, match="mouth_box"):
        dataclasses.replace(model.config, mouth_x_blur=1.0, mouth_box=None, mouth_planes=0)
    with pytest.raises(ValueError, match="≥ 0"):
        dataclasses.replace(model.config, mouth_x_blur=-1.0)


def test_identity_planes_at_twice_the_resolution(model: TriplaneTalker) -> None:
    """`identity_scale` 2: the identity planes hold 2× the texels a side; the predictor reads them average-pooled
    (a nearest-neighbour ×2 copy of a model's identity gives that model's deltaplane), the deltaplane and the
    confined mouth planes are upsampled bilinearly (texel centres, align_corners=False) before the sum, the mouth
    footprint that `mouth_x_blur` uses is the full planes', and training reaches the fine texels."""
    lip_mode = {"audio_token": "lips", "mouth_planes": 2, "mouth_confined": True, "mouth_planes_on": (0,)}
    coarse = TriplaneTalker(dataclasses.replace(model.config, **lip_mode))
    coarse.lips.fit(torch.randn(50, 40, generator=torch.Generator().manual_seed(3)))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a deltaplane and mouth planes that are not zero
        for parameter in coarse.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    fine = TriplaneTalker(dataclasses.replace(coarse.config, identity_scale=2))
    size = coarse.config.plane_resolution
    assert fine.identity_planes.shape == (3, coarse.config.plane_channels, 2 * size, 2 * size)
    assert fine.mouth_footprint.shape == (2 * size, 2 * size)
    state = coarse.state_dict()
    state["identity_planes"] = coarse.identity_planes.detach().repeat_interleave(2, -1).repeat_interleave(2, -2)
    fine.load_state_dict(state)
    torch.testing.assert_close(fine.coarse_identity(), coarse.identity_planes, rtol=0, atol=1e-7)

    tokens = coarse.tokens(_conditions(2, 0))
    with torch.no_grad():
        full, delta = fine.planes(tokens)
        _, coarse_delta = coarse.planes(tokens)
    torch.testing.assert_close(delta, coarse_delta, rtol=0, atol=1e-6)
    assert delta.shape[-1] == size and delta.abs().amax() > 1e-3
    channels = coarse.config.plane_channels
    upsampled = torch.nn.functional.interpolate(delta.flatten(0, 1), scale_factor=2.0, mode="bilinear",
                                                align_corners=False).unflatten(0, delta.shape[:2])
    torch.testing.assert_close(full[:, :, :channels], state["identity_planes"] + upsampled[:, :, :channels])
    torch.testing.assert_close(full[:, :, channels:], upsampled[:, :, channels:])  # the confined mouth planes

    cameras = orbit_cameras(torch.zeros(2), torch.zeros(2), 128, 128)
    output, _ = fine(cameras, _conditions(2, 0))
    (output.rgb - 0.3).abs().mean().backward()
    gradient = fine.identity_planes.grad
    # the four fine texels of a coarse one get gradients of their own
    assert (gradient - gradient.reshape(3, channels, size, 2, size, 2).mean((3, 5)).repeat_interleave(
        2, -1).repeat_interleave(2, -2)).abs().amax() > 1e-3 * gradient.abs().amax()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in fine.predictor.parameters())
    with pytest.raises(ValueError, match="identity_scale"):
        dataclasses.replace(model.config, identity_scale=3)
