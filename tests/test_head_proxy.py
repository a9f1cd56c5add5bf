"""The head proxy (issue 11): an ellipsoid fitted to the head's silhouette gives hair and ear pixels a depth behind
the face, anchored on the face mesh, and the model's depth prior and pseudo multi-view terms use those points only
with `TriplaneTalkerConfig.head_proxy`."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deltaplane import api
from deltaplane.cli import main
from deltaplane.data.dataset import load_clip, make_batch
from deltaplane.errors import InputError
from deltaplane.geometry.face_depth import FACE_VERTICES
from deltaplane.geometry.head_proxy import HEAD_LABEL, HeadProxyConfig, fit_head_ellipse, head_points
from deltaplane.inference import load_run
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.presets import get_preset
from deltaplane.training.logging import read_log
from deltaplane.training.trainer import train

SIZE, FOCAL = 256, 900.0
CENTRE, AXES = np.array([128.0, 110.0]), np.array([60.0, 80.0])


def _parsing() -> np.ndarray:
    """A head ellipse (label 2) with a face (label 3) inside it, over a torso (label 1) below the chin."""
    parsing = np.zeros((SIZE, SIZE), np.uint8)
    parsing[200:] = 1
    cv2.ellipse(parsing, (128, 110), (60, 80), 0, 0, 360, HEAD_LABEL, -1)
    cv2.ellipse(parsing, (128, 130), (35, 55), 0, 0, 360, 3, -1)
    return parsing


def _mesh_on_ellipsoid(front: float) -> tuple[np.ndarray, np.ndarray]:
    """Face vertices on the ellipsoid of the fitted ellipse, its front at relative depth `front`."""
    ellipse = fit_head_ellipse(_parsing(), 190.0, FOCAL)
    rng = np.random.default_rng(0)
    xy = CENTRE + rng.uniform(-30, 30, (FACE_VERTICES, 2))
    return np.concatenate([xy, (front + ellipse.offset(xy))[:, None]], 1), np.ones(FACE_VERTICES, bool)


def test_the_fitted_ellipse_is_the_head_silhouette() -> None:
    ellipse = fit_head_ellipse(_parsing(), chin_y=SIZE, focal=FOCAL)
    np.testing.assert_allclose(ellipse.centre, CENTRE + 0.5, atol=1.0)
    np.testing.assert_allclose(ellipse.axes, AXES, rtol=0.03)
    assert ellipse.depth == pytest.approx(HeadProxyConfig().depth_ratio * ellipse.axes[0] / FOCAL)
    # its front surface: the front point, then farther toward the rim, C/f at and beyond it
    width = ellipse.axes[0]
    offsets = ellipse.offset(ellipse.centre + np.array([[0, 0], [width / 2, 0], [width, 0], [1.5 * width, 0]]))
    assert offsets[0] == 0 and 0 < offsets[1] < offsets[2]
    assert offsets[2] == pytest.approx(ellipse.depth) and offsets[3] == ellipse.depth
    assert fit_head_ellipse(np.zeros((SIZE, SIZE), np.uint8), SIZE, FOCAL) is None


def test_head_points_sit_on_the_ellipsoid_anchored_on_the_mesh() -> None:
    parsing, chin = _parsing(), 190.0
    mesh, valid = _mesh_on_ellipsoid(front=0.02)
    config = HeadProxyConfig(points=64)
    points, ok = head_points(parsing, mesh, valid, chin, FOCAL, np.random.default_rng(1), config)
    assert points.shape == (64, 3) and ok.all()
    ellipse = fit_head_ellipse(parsing, chin, FOCAL)
    np.testing.assert_allclose(points[:, 2], 0.02 + ellipse.offset(points[:, :2]), atol=1e-6)
    columns, rows = points[:, 0].astype(int), points[:, 1].astype(int)
    assert (parsing[rows, columns] == HEAD_LABEL).all() and (points[:, 1] < chin).all()  # hair and ears only
    inset = int(config.inset * SIZE)
    person = parsing >= 1
    assert all(person[r - inset:r + inset + 1, c - inset:c + inset + 1].all() for r, c in zip(rows, columns))
    # behind the face: the head points' mean depth is farther than the mesh's
    assert points[:, 2].mean() > mesh[:, 2].mean()


def test_no_head_points_without_a_head_or_a_mesh() -> None:
    mesh, valid = _mesh_on_ellipsoid(front=0.0)
    face_only = np.where(_parsing() == HEAD_LABEL, 3, _parsing()).astype(np.uint8)
    for parsing, mesh_valid in ((face_only, valid), (_parsing(), np.zeros_like(valid))):
        points, ok = head_points(parsing, mesh, mesh_valid, 190.0, FOCAL, np.random.default_rng(0))
        assert not ok.any() and points.shape == (HeadProxyConfig().points, 3)


def test_the_model_uses_the_head_points_only_with_head_proxy(synthetic_dataset: Path) -> None:
    torch.manual_seed(0)
    config, _ = get_preset("tiny")
    config = dataclasses.replace(config, audio=dataclasses.replace(config.audio, feature_dim=80),
                                 loss=dataclasses.replace(config.loss, face_depth=1.0, novel_depth=1.0,
                                                          novel_color=1.0))
    model = TriplaneTalker(config)
    _, plain = load_clip(synthetic_dataset, "train", size=config.output_resolution)
    assert plain.face_points.shape[1] == FACE_VERTICES  # only asked for: 7 ms a frame
    _, clip = load_clip(synthetic_dataset, "train", size=config.output_resolution, head_proxy=True)
    assert clip.face_points.shape[1] == FACE_VERTICES + HeadProxyConfig().points
    torch.testing.assert_close(clip.face_points[:, :FACE_VERTICES], plain.face_points)
    assert clip.face_point_valid[:, FACE_VERTICES:].any(1).all()  # the synthetic subject has hair
    batch = make_batch(clip, torch.tensor([0, 7]), config.render_resolution)
    output, delta = model(batch.cameras, batch.conditions, lower_face=batch.lower_face)

    def terms(model: TriplaneTalker, batch) -> dict[str, torch.Tensor]:
        torch.manual_seed(1)  # the samples' jitter
        found = model.loss_terms(output, delta, batch, generator=torch.Generator().manual_seed(0))
        return {name: found[name].detach() for name in ("face_depth", "novel_depth", "novel_color")}

    no_head = dataclasses.replace(batch, face_point_valid=batch.face_point_valid.clone())
    no_head.face_point_valid[:, FACE_VERTICES:] = False
    mesh_only = terms(model, batch)
    for name, value in terms(model, no_head).items():  # without the flag the head points are never read
        torch.testing.assert_close(value, mesh_only[name])
    with_head = TriplaneTalker(dataclasses.replace(config, head_proxy=True))
    with_head.load_state_dict(model.state_dict())
    head = terms(with_head, batch)
    assert all(torch.isfinite(value) for value in head.values())
    assert all(not torch.equal(head[name], mesh_only[name]) for name in head)
    # with it and no valid head point, the mesh's depth term (the novel ones march more rays, so other jitter)
    torch.testing.assert_close(terms(with_head, no_head)["face_depth"], mesh_only["face_depth"])
    mesh_batch = make_batch(plain, torch.tensor([0, 7]), config.render_resolution)
    with pytest.raises(ValueError, match="head_proxy=True"):  # a clip loaded without them: said, not ignored
        with_head.loss_terms(output, delta, mesh_batch)


def test_training_loads_the_head_points_for_a_head_proxy_model(synthetic_dataset: Path, tmp_path: Path) -> None:
    model_config, train_config = get_preset("tiny")
    model_config = dataclasses.replace(model_config, head_proxy=True,
                                       loss=dataclasses.replace(model_config.loss, novel_color=1.0))
    train_config = dataclasses.replace(train_config, steps=2, log_every=1, eval_every=0, sample_every=1000)
    train(synthetic_dataset, tmp_path / "run", model_config, train_config, "tiny", torch.device("cpu"),
          progress=False)  # a clip without the head points would raise in the first step
    rows = [row for row in read_log(tmp_path / "run") if "loss" in row]
    assert len(rows) == 2 and all(math.isfinite(row["loss/novel_color"]) for row in rows)


def test_train_takes_the_head_proxy_for_a_new_run_and_keeps_it_on_resume(
        synthetic_dataset: Path, tmp_path: Path) -> None:
    """`--head-proxy` sets it for a new run; a resume without the option keeps it (its clips load the head points:
    the loss would raise without them), and one that asks for the other refuses before any work."""
    run_dir = tmp_path / "run"
    common = [str(synthetic_dataset), "-o", str(run_dir), "--preset", "tiny", "--quiet"]
    main(["train", *common, "--steps", "1", "--head-proxy"])
    main(["train", *common, "--steps", "2", "--resume"])
    model, _, _ = load_run(run_dir, torch.device("cpu"))
    assert model.config.head_proxy
    assert [row["step"] for row in read_log(run_dir) if "loss" in row] == [1, 2]
    before = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    with pytest.raises(InputError, match="trained with the head proxy"):
        api.train(synthetic_dataset, run_dir, preset="tiny", steps=3, resume=True, head_proxy=False,
                  progress=False)
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == before


def _delta_and_identity_gradients(model: TriplaneTalker, batch, delta: torch.Tensor, name: str
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of one loss term with respect to the deltaplane (a leaf here) and the identity planes."""
    leaf = delta.detach().requires_grad_()
    model.zero_grad()
    torch.manual_seed(1)  # the samples' jitter
    output = model.render(model.with_identity(leaf), batch.cameras)
    model.loss_terms(output, leaf, batch, generator=torch.Generator().manual_seed(0))[name].backward()
    return leaf.grad.flatten(), model.identity_planes.grad.flatten().clone()


@pytest.mark.parametrize("name", ["face_depth", "novel_depth"])
def test_the_head_proxy_set_apart(synthetic_dataset: Path, name: str) -> None:
    """Set apart from the mesh's centring ("centring"), the head points still reach the deltaplane; with "planes"
    they change its gradient of either depth term only in scale (their share of the pooled mean), not in
    direction: they neither reach it nor move the mesh's centre, and still reach the identity planes. Joined
    ("none"), they reach both."""
    torch.manual_seed(0)
    config, _ = get_preset("tiny")
    config = dataclasses.replace(config, audio=dataclasses.replace(config.audio, feature_dim=80), head_proxy=True,
                                 loss=dataclasses.replace(config.loss, face_depth=1.0, novel_depth=1.0))
    _, clip = load_clip(synthetic_dataset, "train", size=config.output_resolution, head_proxy=True)
    batch = make_batch(clip, torch.tensor([0, 7]), config.render_resolution)
    no_head = dataclasses.replace(batch, face_point_valid=batch.face_point_valid.clone())
    no_head.face_point_valid[:, FACE_VERTICES:] = False
    joint = TriplaneTalker(config)
    with torch.no_grad():
        delta = joint(batch.cameras, batch.conditions, lower_face=batch.lower_face)[1]

    def cosines(apart: str) -> tuple[float, float]:
        model = TriplaneTalker(dataclasses.replace(config, head_proxy_apart=apart))
        model.load_state_dict(joint.state_dict())
        with_head = _delta_and_identity_gradients(model, batch, delta, name)
        without = _delta_and_identity_gradients(model, no_head, delta, name)
        return tuple(torch.cosine_similarity(a, b, dim=0).item() for a, b in zip(with_head, without))

    delta_cosine, identity_cosine = cosines("planes")
    assert delta_cosine == pytest.approx(1.0, abs=1e-4) and identity_cosine < 0.999
    assert cosines("centring")[0] < 0.999 and cosines("none")[0] < 0.999


def test_head_proxy_apart_needs_the_head_proxy() -> None:
    config, _ = get_preset("tiny")
    with pytest.raises(ValueError, match="needs head_proxy"):
        dataclasses.replace(config, head_proxy_apart="planes")
