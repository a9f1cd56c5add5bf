"""The adversarial patch term (issue 10): crops inside the boxes, a discriminator that learns blur from detail, and
training with it on (logged, saved, resumed exactly) or off (no discriminator, nothing else changes)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from deltaplane.checkpoint import load_checkpoint
from deltaplane.data.dataset import box_mask, load_clip, make_batch
from deltaplane.fields.discriminator import PatchDiscriminatorConfig
from deltaplane.presets import get_preset
from deltaplane.training.adversarial import AdversarialConfig, PatchAdversary, box_bounds, crop, crop_corners
from deltaplane.training.config import TrainConfig
from deltaplane.training.logging import read_log
from deltaplane.training.trainer import _progress, train

CPU = torch.device("cpu")
SMALL = PatchDiscriminatorConfig(channels=8, max_channels=16, downsamplings=1)
"""A discriminator for 16² crops of the tiny preset's 128² output."""
CRITIC_KEYS = {"loss/discriminator", "discriminator/real", "discriminator/fake"}


def test_crops_lie_inside_the_boxes() -> None:
    generator = torch.Generator().manual_seed(0)
    size, image_size = 16, 96
    low = torch.rand(200, 2, generator=generator) * 50
    boxes = torch.cat([low, low + 20 + torch.rand(200, 2, generator=generator) * 25], dim=1)  # [200, 4], 20–45 wide
    masks = box_mask(boxes, image_size)
    corners = crop_corners(box_bounds(masks)[:, None].expand(-1, 3, 4), size, image_size, generator)  # [200, 3, 2]
    for mask, frame_corners in zip(masks[:, 0], corners):
        for x, y in frame_corners.tolist():
            assert mask[y:y + size, x:x + size].all()
    # the corners cover their range: some crops touch each side of their box
    bounds = box_bounds(masks)[:, None]
    assert (corners == bounds[..., :2]).any() and (corners == bounds[..., 2:] - size).any()
    # a box narrower than the crop gets it centred, and crops stay inside the image
    narrow = box_bounds(box_mask(torch.tensor([[40.0, 0.0, 48.0, 8.0]]), image_size))[:, None]
    assert crop_corners(narrow, size, image_size, generator).tolist() == [[[36, 0]]]
    # crops are the pixels at their corners, frame by frame
    images = torch.arange(2 * 3 * image_size**2, dtype=torch.float32).reshape(2, 3, image_size, image_size)
    patches = crop(images, torch.tensor([[[5, 7]], [[0, 80]]]), size)
    assert torch.equal(patches[0], images[0, :, 7:23, 5:21]) and torch.equal(patches[1], images[1, :, 80:96, 0:16])
    with pytest.raises(ValueError, match="crop_size"):
        AdversarialConfig(crop_size=16)  # the default discriminator sees 70-px patches


def test_batch_crops_lie_in_the_mouth_and_face_boxes(synthetic_dataset: Path) -> None:
    _, clip = load_clip(synthetic_dataset, "train", size=128)
    batch = make_batch(clip, torch.arange(4), raw_size=32)
    adversary = PatchAdversary(AdversarialConfig(SMALL, crop_size=16, crops_per_frame=5, mouth_crops=2), CPU, 0)
    corners = adversary.corners(batch)  # [4, 5, 2]
    assert corners.shape == (4, 5, 2)
    for frame, frame_corners in enumerate(corners.tolist()):
        for index, (x, y) in enumerate(frame_corners):
            box = batch.mouth_box if index < 2 else batch.face_box
            assert box[frame, 0, y:y + 16, x:x + 16].all()


def _textures(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(sharp, blurred) [count, 3, 32, 32]: random blocky textures in [-1, 1] and their Gaussian blur (σ ≈ 1.5 px)."""
    blocks = torch.rand(count, 3, 16, 16, generator=generator) * 2 - 1
    sharp = F.interpolate(blocks, scale_factor=2, mode="nearest")
    taps = torch.exp(-torch.arange(-4, 5.0).square() / (2 * 1.5**2))
    kernel = (taps[:, None] * taps[None, :] / taps.sum() ** 2).expand(3, 1, 9, 9)
    return sharp, F.conv2d(F.pad(sharp, (4,) * 4, mode="reflect"), kernel, groups=3)


def test_discriminator_learns_blur_from_detail() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    config = AdversarialConfig(PatchDiscriminatorConfig(channels=16, max_channels=32, downsamplings=2), crop_size=24)
    adversary = PatchAdversary(config, CPU, seed=0)
    for _ in range(30):
        sharp, blurred = _textures(8, generator)
        corners = crop_corners(torch.tensor([0, 0, 32, 32]).expand(8, 2, 4), 24, 32, adversary.generator)
        adversary.step(rendered=blurred, images=sharp, corners=corners)
    sharp, blurred = _textures(32, generator)  # unseen textures
    with torch.no_grad():
        real, fake = adversary.discriminator(sharp).mean(), adversary.discriminator(blurred).mean()
    assert real > fake + 0.5, (real, fake)


def test_feature_matching_pulls_renders_towards_the_truth_at_their_places() -> None:
    """The feature-matching term is 0 for the true crops themselves and, unlike the hinge term, asks for the truth at
    each crop's place: descending it alone (a trained discriminator held fixed) brings blurred images nearer the
    sharp ones they stand for, pixel by pixel, and their fine detail back (the Laplacian's energy)."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    config = AdversarialConfig(PatchDiscriminatorConfig(channels=16, max_channels=32, downsamplings=2), crop_size=24)
    adversary = PatchAdversary(config, CPU, seed=0)
    whole = torch.tensor([0, 0, 32, 32]).expand(8, 2, 4)
    for _ in range(30):
        sharp, blurred = _textures(8, generator)
        adversary.step(rendered=blurred, images=sharp, corners=crop_corners(whole, 24, 32, adversary.generator))
    sharp, blurred = _textures(8, generator)  # unseen textures
    corners = crop_corners(whole, 24, 32, adversary.generator)
    matched = adversary.generator_terms(sharp, sharp, corners, matching=True)[1]
    assert matched == 0 and adversary.generator_terms(sharp, sharp, corners)[1] is None
    rendered = blurred.clone().requires_grad_()
    optimizer = torch.optim.Adam([rendered], lr=0.01)
    for _ in range(60):
        corners = crop_corners(whole, 24, 32, adversary.generator)
        optimizer.zero_grad()
        adversary.generator_terms(rendered, sharp, corners, matching=True)[1].backward()
        optimizer.step()
    laplacian = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).expand(3, 1, 3, 3)

    def detail(images: torch.Tensor) -> float:
        return F.conv2d(images, laplacian, groups=3).square().mean().item()

    assert (rendered.detach() - sharp).abs().mean() < 0.8 * (blurred - sharp).abs().mean()
    assert detail(rendered.detach()) > 2 * detail(blurred)


def _adversarial_run(weight: float, steps: int, feature_match: float = 0.0, **overrides):
    model_config, train_config = get_preset("tiny")
    model_config = dataclasses.replace(model_config, loss=dataclasses.replace(model_config.loss, adversarial=weight,
                                                                              feature_match=feature_match))
    adversarial = AdversarialConfig(SMALL, crop_size=16, crops_per_frame=2, mouth_crops=1, start=2)
    return model_config, dataclasses.replace(train_config, steps=steps, log_every=1, checkpoint_every=2, eval_every=0,
                                              eval_frames=1, sample_every=1000, adversarial=adversarial, **overrides)


@pytest.fixture(scope="module")
def adversarial_run(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 tiny steps with the term on (weight 0.1, the renderer gets it from step 2), checkpoints at steps 2 and 4."""
    run_dir = tmp_path_factory.mktemp("adversarial") / "run"
    train(synthetic_dataset, run_dir, *_adversarial_run(0.1, steps=4), "tiny", CPU, progress=False)
    return run_dir


def _checkpoint(run_dir: Path, step: int):
    return load_checkpoint(run_dir / "checkpoints" / f"step_{step:07d}")


def test_training_with_the_adversarial_term_logs_saves_and_resumes(synthetic_dataset: Path, adversarial_run: Path,
                                                                   tmp_path: Path) -> None:
    model_config, train_config = _adversarial_run(0.1, steps=4)
    train(synthetic_dataset, tmp_path / "b", model_config, train_config, "tiny", CPU, progress=False, until_step=2)
    train(synthetic_dataset, tmp_path / "b", model_config, train_config, "tiny", CPU, resume=True, progress=False)
    rows = {run: [r for r in read_log(path) if "loss" in r] for run, path in (("a", adversarial_run),
                                                                              ("b", tmp_path / "b"))}
    assert [r["step"] for r in rows["a"]] == [1, 2, 3, 4]
    assert all(CRITIC_KEYS <= r.keys() for r in rows["a"])  # the discriminator trains from step 0
    assert ["loss/adversarial" in r for r in rows["a"]] == [False, False, True, True]  # the renderer from `start`
    for key in ("loss", "loss/discriminator", "discriminator/real", "discriminator/fake"):
        assert [r[key] for r in rows["b"]] == [r[key] for r in rows["a"]], key
    straight, resumed = _checkpoint(adversarial_run, 4).training_state, _checkpoint(tmp_path / "b", 4).training_state
    critic = [name for name in straight if name.startswith(("discriminator.", "optim.discriminator.", "rng.crops"))]
    assert any(name.endswith("weight.original") for name in critic) and any("exp_avg" in name for name in critic)
    for name in critic:
        assert torch.equal(resumed[name], straight[name]), name


def test_feature_matching_alone_trains_the_discriminator_and_starts_with_the_term(synthetic_dataset: Path,
                                                                                   tmp_path: Path) -> None:
    """Feature matching without the hinge term still builds and trains the discriminator, and gives the renderer its
    term from the adversarial start on (step 2 of 4), with no hinge term logged."""
    train(synthetic_dataset, tmp_path / "fm", *_adversarial_run(0.0, steps=4, feature_match=1.0), "tiny", CPU,
          progress=False)
    rows = [r for r in read_log(tmp_path / "fm") if "loss" in r]
    assert all(CRITIC_KEYS <= r.keys() and "loss/adversarial" not in r for r in rows)
    assert ["loss/feature_match" in r for r in rows] == [False, False, True, True]
    assert all(r["loss/feature_match"] > 0 for r in rows[2:])


def test_feature_matching_can_start_on_its_own(synthetic_dataset: Path, tmp_path: Path) -> None:
    """`matching_start` gives the renderer the feature-matching term from that step (here the first) while the
    hinge term keeps its own start (step 2 of 4)."""
    model_config, train_config = _adversarial_run(0.1, steps=4, feature_match=1.0)
    adversarial = dataclasses.replace(train_config.adversarial, matching_start=0)
    train(synthetic_dataset, tmp_path / "fm0", model_config, dataclasses.replace(train_config, adversarial=adversarial),
          "tiny", CPU, progress=False)
    rows = [r for r in read_log(tmp_path / "fm0") if "loss" in r]
    assert ["loss/feature_match" in r for r in rows] == [True] * 4
    assert ["loss/adversarial" in r for r in rows] == [False, False, True, True]


def test_the_term_starts_at_a_share_of_the_run(synthetic_dataset: Path, tmp_path: Path) -> None:
    """With `start_share` the renderer gets the term from that share of the run on even where `start` lies beyond
    the run's end (4 steps, half of them: from the third); without it, at `start` alone (never, here)."""
    for share, expected in ((0.5, [False, False, True, True]), (None, [False] * 4)):
        model_config, train_config = _adversarial_run(0.1, steps=4)
        adversarial = dataclasses.replace(train_config.adversarial, start=1000, start_share=share)
        train(synthetic_dataset, tmp_path / str(share), model_config,
              dataclasses.replace(train_config, adversarial=adversarial), "tiny", CPU, progress=False)
        rows = [r for r in read_log(tmp_path / str(share)) if "loss" in r]
        assert ["loss/adversarial" in r for r in rows] == expected, share


def test_a_run_that_stops_before_the_term_says_so(synthetic_dataset: Path, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A run that ends before the renderer ever got the term warns that its renders lack it, and says where the
    term would have started; one that got it does not."""
    for start, share, warning in ((1000, None, "start (step 1000)"),
                                  (1000, 0.9, "start (step 1000 or 90 % of the run)"), (1, None, None)):
        model_config, train_config = _adversarial_run(0.1, steps=2)
        adversarial = dataclasses.replace(train_config.adversarial, start=start, start_share=share)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="deltaplane.training.trainer"):
            train(synthetic_dataset, tmp_path / f"{start}_{share}", model_config,
                  dataclasses.replace(train_config, adversarial=adversarial), "tiny", CPU, progress=False)
        assert ("before the adversarial detail term" in caplog.text) == (warning is not None), start
        assert warning is None or f"detail term's {warning}:" in caplog.text, caplog.text


def test_a_share_of_minutes_starts_the_term_on_the_clock() -> None:
    """A run of minutes is as far along as its clock (`_progress`), so a share starts the term at a step that
    `start` alone never reaches."""
    config = TrainConfig(steps=6000, max_minutes=5.0)
    adversarial = AdversarialConfig(start=1000, start_share=0.25)
    assert not adversarial.started(300, _progress(config, 300, 60.0))  # a fifth of the minutes
    assert adversarial.started(300, _progress(config, 300, 80.0))  # past a quarter
    assert adversarial.started(1000, 0.0) and not AdversarialConfig(start=1000).started(999, 1.0)
    with pytest.raises(ValueError, match="start_share"):
        AdversarialConfig(start_share=1.5)


def test_weight_zero_builds_no_discriminator(synthetic_dataset: Path, adversarial_run: Path, tmp_path: Path) -> None:
    """Off, the discriminator's configuration changes nothing: no tensors of it are saved, nothing is logged, and the
    renderer trains exactly as with the term on before its `start` (the discriminator has its own random streams)."""
    train(synthetic_dataset, tmp_path / "off", *_adversarial_run(0.0, steps=4), "tiny", CPU, progress=False,
          until_step=2)  # the same learning-rate schedule
    off, on = _checkpoint(tmp_path / "off", 2), _checkpoint(adversarial_run, 2)
    assert not [name for name in off.training_state if "discriminator" in name or name == "rng.crops"]
    off_rows = [r for r in read_log(tmp_path / "off") if "loss" in r]
    assert not [key for row in off_rows for key in row if "discriminator" in key or "adversarial" in key]
    on_rows = [r for r in read_log(adversarial_run) if "loss" in r][:2]
    assert [r["loss"] for r in off_rows] == [r["loss"] for r in on_rows]
    assert off.model_state.keys() == on.model_state.keys()
    assert all(torch.equal(off.model_state[name], on.model_state[name]) for name in off.model_state)
