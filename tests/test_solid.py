"""The solid-body term (issue 11, docs/novel-views.md "A solid head"): rays among the person's opaque pixels, points
behind their rendered surface, and the model's `solid` term; and the empty-behind term (`behind`, docs/novel-views.md
"Run 12") beyond the body's depth."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from deltaplane.data.dataset import load_clip, make_batch
from deltaplane.geometry.cameras import orbit_cameras
from deltaplane.geometry.rays import pixel_rays
from deltaplane.geometry.solid import SolidConfig, choose_rays, empty_points, interior_points
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.presets import get_preset
from deltaplane.training.logging import read_log
from deltaplane.training.trainer import train


def test_rays_are_drawn_among_the_masked_ones_without_repeats() -> None:
    generator = torch.Generator().manual_seed(0)
    mask = torch.rand(3, 500, generator=generator) < 0.3
    mask[2] = False
    mask[2, :5] = True  # fewer masked rays than asked for
    chosen, valid = choose_rays(mask, torch.rand(3, 500, generator=generator), 40)
    assert valid[:2].all() and mask[:2].gather(1, chosen[:2]).all()
    assert int(valid[2].sum()) == 5 and set(chosen[2][valid[2]].tolist()) == set(range(5))
    assert all(len(set(row.tolist())) == 40 for row in chosen)
    again, _ = choose_rays(mask, torch.rand(3, 500, generator=generator), 40)
    assert not torch.equal(chosen[:2], again[:2])  # the draw, not the order of the rays, picks them


def test_interior_points_lie_on_their_rays_between_margin_and_thickness_behind_the_surface() -> None:
    cameras = orbit_cameras(torch.tensor([0.2, -0.1]), torch.tensor([0.05, 0.1]), 16, 16)
    origins, directions = pixel_rays(cameras)
    depth = 2.4 + 0.2 * torch.rand(2, 256)
    chosen = torch.randint(256, (2, 30))
    config = SolidConfig(margin=0.05, thickness=0.25)
    points = interior_points(origins, directions, depth, chosen, torch.rand(2, 30), config)
    offset = points - origins.gather(1, chosen[..., None].expand(-1, -1, 3))
    along = (offset * directions.gather(1, chosen[..., None].expand(-1, -1, 3))).sum(-1)
    torch.testing.assert_close(offset.norm(dim=-1), along)  # on the ray, in front of the camera
    behind = along - depth.gather(1, chosen)
    assert (behind >= 0.05 - 1e-5).all() and (behind <= 0.25 + 1e-5).all()


def test_empty_points_lie_between_the_body_depth_and_the_backdrop() -> None:
    cameras = orbit_cameras(torch.tensor([0.2, -0.1]), torch.tensor([0.05, 0.1]), 16, 16)
    origins, directions = pixel_rays(cameras)
    depth = 2.3 + 0.5 * torch.rand(2, 256)  # some surfaces lie within body_depth of the limit
    chosen = torch.randint(256, (2, 60))
    config = SolidConfig(body_depth=0.5)
    points, valid = empty_points(origins, directions, depth, chosen, torch.rand(2, 60), config, limit=3.1)
    along = ((points - origins.gather(1, chosen[..., None].expand(-1, -1, 3)))
             * directions.gather(1, chosen[..., None].expand(-1, -1, 3))).sum(-1)
    surface = depth.gather(1, chosen)
    assert torch.equal(valid, surface < 2.6) and valid.any() and not valid.all()
    assert (along[valid] >= surface[valid] + 0.5 - 1e-5).all() and (along[valid] <= 3.1 + 1e-5).all()


def test_bad_settings_are_refused() -> None:
    for bad in ({"rays": 0}, {"margin": -0.1}, {"margin": 0.3, "thickness": 0.25},
                {"thickness": 0.25, "body_depth": 0.2}):
        with pytest.raises(ValueError):
            SolidConfig(**bad)


def _model(skip_mouth: bool = False, background: str = "field", solid: float = 1.0, behind: float = 0.0
           ) -> TriplaneTalker:
    config, _ = get_preset("tiny")
    torch.manual_seed(0)
    return TriplaneTalker(dataclasses.replace(config, audio=dataclasses.replace(config.audio, feature_dim=80),
                                              loss=dataclasses.replace(config.loss, solid=solid, behind=behind),
                                              solid=dataclasses.replace(config.solid, skip_mouth=skip_mouth),
                                              background=background, isolate_lower_face=1))


def _assert_minimisable(model: TriplaneTalker, term, ceiling: float) -> None:
    """`term()` lies in (0, `ceiling`), sends a finite gradient into the identity planes, and 40 Adam steps on the
    identity planes and the field halve it."""
    start = term()
    assert 0 < start.item() < ceiling
    gradient, = torch.autograd.grad(start, model.identity_planes)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0
    optimizer = torch.optim.Adam([model.identity_planes, *model.field.parameters()], lr=1e-2)
    for _ in range(40):
        optimizer.zero_grad()
        term().backward()
        optimizer.step()
    assert term().item() < 0.5 * start.item()


def _opaque_scene(model: TriplaneTalker, dataset: Path):
    """Two synthetic frames rendered by `model`, and the same render made opaque everywhere at depth 2.5:
    (batch, output, delta, surface)."""
    _, clip = load_clip(dataset, "train", size=model.config.output_resolution)
    batch = make_batch(clip, torch.tensor([0, 5]), model.config.render_resolution)
    output, delta = model(batch.cameras, batch.conditions, lower_face=batch.lower_face)
    surface = dataclasses.replace(output, accumulation=torch.ones_like(output.accumulation),
                                  depth=torch.full_like(output.depth, 2.5))
    return batch, output, delta, surface


def test_the_term_fills_the_body_behind_an_opaque_surface_and_is_off_at_weight_zero(synthetic_dataset: Path) -> None:
    """Behind a surface that the frame renders opaque (here: everywhere at depth 2.5), the term is the field's
    transparency there (0–1) plus its colour error against the pixel's (0–2), with gradient into the identity
    planes; minimising it fills the body with the surface's colour. At weight 0 nothing is computed or drawn."""
    model = _model()
    batch, output, delta, surface = _opaque_scene(model, synthetic_dataset)
    delta = delta.detach()
    planes = lambda: model.identity_planes[None] + delta  # noqa: E731

    _assert_minimisable(model, lambda: model.solid_term(planes(), surface, batch, torch.Generator().manual_seed(1)),
                        ceiling=3)
    off = TriplaneTalker(dataclasses.replace(model.config, loss=dataclasses.replace(model.config.loss, solid=0.0)))
    state = torch.get_rng_state()
    assert "solid" not in off.loss_terms(output, delta, batch)
    assert torch.equal(torch.get_rng_state(), state)


def test_skip_mouth_leaves_the_mouth_box_alone(synthetic_dataset: Path) -> None:
    """With `skip_mouth` no point lies behind the mouth box: a box over the whole frame leaves no ray (term 0), a
    box over a quarter changes the rays drawn."""
    models = {skip: _model(skip_mouth=skip) for skip in (False, True)}  # the same weights (seed 0)
    batch, _, delta, surface = _opaque_scene(models[False], synthetic_dataset)
    planes = models[False].identity_planes[None] + delta.detach()

    def term(skip: bool, box: torch.Tensor) -> float:
        return models[skip].solid_term(planes, surface, dataclasses.replace(batch, mouth_box=box),
                                       torch.Generator().manual_seed(1)).item()

    everywhere, quarter = torch.ones_like(batch.mouth_box), torch.zeros_like(batch.mouth_box)
    quarter[..., :quarter.shape[-2] // 2, :quarter.shape[-1] // 2] = True
    assert term(True, everywhere) == 0.0 and term(False, everywhere) > 0
    assert term(True, quarter) != term(False, quarter)


def test_training_logs_the_term(synthetic_dataset: Path, tmp_path: Path) -> None:
    model_config, train_config = get_preset("tiny")
    model_config = dataclasses.replace(model_config, loss=dataclasses.replace(model_config.loss, solid=1.0))
    train_config = dataclasses.replace(train_config, steps=2, log_every=1, eval_every=0, sample_every=1000)
    train(synthetic_dataset, tmp_path / "run", model_config, train_config, "tiny", torch.device("cpu"),
          progress=False)
    rows = [row for row in read_log(tmp_path / "run") if "loss" in row]
    assert len(rows) == 2 and all(math.isfinite(row["loss/solid"]) for row in rows)


@pytest.mark.parametrize("background", ["field", "plate"])
def test_the_behind_term_empties_the_space_behind_the_body(synthetic_dataset: Path, background: str) -> None:
    """Behind a surface at depth 2.5 the term is the field's opacity between 3.0 and the backdrop (3.1 in
    whole-frame mode, the far end of the rays in plate mode), in (0, 1), with gradient into the identity planes;
    minimising it empties that space. Where the surface lies within the body's depth of the backdrop there is no
    such space (term 0). At weight 0 nothing is computed."""
    model = _model(background=background, solid=0.0, behind=1.0)
    config = model.config
    batch, output, delta, surface = _opaque_scene(model, synthetic_dataset)
    planes = lambda: model.identity_planes[None] + delta.detach()  # noqa: E731
    _assert_minimisable(model, lambda: model.behind_term(planes(), surface, batch, torch.Generator().manual_seed(1)),
                        ceiling=1)
    nearer = dataclasses.replace(surface, depth=torch.full_like(surface.depth, 2.7))  # 3.2 is past whole-frame's 3.1
    assert (model.behind_term(planes(), nearer, batch, torch.Generator().manual_seed(1)).item() == 0.0) == (
        background == "field")
    terms = model.loss_terms(output, delta, batch)
    assert "behind" in terms and "solid" not in terms
    off = TriplaneTalker(dataclasses.replace(config, loss=dataclasses.replace(config.loss, behind=0.0)))
    assert "behind" not in off.loss_terms(output, delta, batch)
