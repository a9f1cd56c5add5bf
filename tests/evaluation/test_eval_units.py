"""The evaluation building blocks on synthetic inputs: the fast pixel path agrees with the tensor reference, LMD
follows spec §8, the sync search finds known offsets, view parsing, the SyncNet crop, FID sampling, the ArcFace
identity score and the report."""

from __future__ import annotations

import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

import deltaplane.evaluation.fid as evaluation_fid
from deltaplane.errors import InputError
from deltaplane.evaluation.face import (DETAIL_CROP_SIZE, detail_crops, face_mask, mouth_crop, mouth_landmark_distance,
                                        mouth_motion, mouth_opening, mouth_shape_offset, region_masks)
from deltaplane.evaluation.fid import InceptionSampler, fid_metrics
from deltaplane.evaluation.keys import KEYS, describe
from deltaplane.evaluation.pixels import (detail_gain, detail_scores, frame_scores, laplacian_variance, region_scores,
                                         ssim_map)
from deltaplane.evaluation.report import ReportData, contact_sheet, render_html
from deltaplane.evaluation.run import parse_views
from deltaplane.evaluation.scoring import VideoTrack, eye_metrics, identity_metrics, sharpness_metrics
from deltaplane.evaluation.sync import landmark_sync, speech_envelope, syncnet_crop
from deltaplane.metrics.fid import FIDInceptionV3, inception_features
from deltaplane.metrics.image import psnr, ssim


def _frames(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(96, 80, 3)), axis=0), axis=1)
    target = np.clip((smooth - smooth.min()) / np.ptp(smooth) * 255, 0, 255).astype(np.uint8)
    noisy = target.astype(np.int16) + rng.integers(-20, 21, target.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8), target


def _signed(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def test_fast_ssim_and_psnr_match_the_tensor_reference() -> None:
    prediction, target = _frames()
    mask = np.zeros(target.shape[:2], bool)
    mask[20:70, 10:60] = True
    scores = frame_scores(prediction, target, mask)
    # float32 sums of squares: the tensor path is ~1e-5 off skimage's float64 value, the OpenCV path ~1e-6.
    assert scores["ssim"] == pytest.approx(float(ssim(_signed(prediction), _signed(target))[0]), abs=5e-5)
    reference = structural_similarity(prediction / 255.0, target / 255.0, channel_axis=2, gaussian_weights=True,
                                      sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert scores["ssim"] == pytest.approx(reference, abs=5e-6)
    assert scores["psnr"] == pytest.approx(float(psnr(_signed(prediction), _signed(target))[0]), abs=1e-3)
    torch_mask = torch.from_numpy(mask)[None, None].float()
    assert scores["psnr_face"] == pytest.approx(
        float(psnr(_signed(prediction), _signed(target), mask=torch_mask)[0]), abs=1e-3)
    assert scores["ssim_face"] == pytest.approx(float(ssim_map(prediction, target)[15:65, 5:55].mean()), abs=1e-6)


def test_ssim_is_computed_in_full_precision_under_autocast() -> None:
    """Its local variances are differences of two near-equal blurs: in bf16 they cancel to noise, so the trainer's
    bf16 evaluations would read SSIM far too low."""
    prediction, target = _frames()
    exact = ssim(_signed(prediction), _signed(target))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = ssim(_signed(prediction), _signed(target))
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, exact, rtol=1e-6, atol=1e-6)


def test_identical_frames_score_perfectly() -> None:
    _, target = _frames()
    scores = frame_scores(target, target, np.ones(target.shape[:2], bool))
    assert math.isinf(scores["psnr"]) and math.isinf(scores["psnr_face"])
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-6) and scores["ssim_face"] == pytest.approx(1.0, abs=1e-6)


def _schematic_face() -> np.ndarray:
    """68 landmarks 200 px wide (jaw ends at x = 50 and 250): eyes as 6-gons around (110, 100) and (190, 100), the
    lips as 12-gons (outer) and 8-gons (inner) around (150, 200), every other point at the nose (150, 150)."""
    points = np.full((68, 2), 150.0, np.float32)
    points[0], points[16] = (50.0, 150.0), (250.0, 150.0)
    ring = lambda count, radii: np.stack([np.cos(np.arange(count) * 2 * np.pi / count),
                                          np.sin(np.arange(count) * 2 * np.pi / count)], -1) * radii
    points[36:42], points[42:48] = ring(6, (15.0, 6.0)) + (110.0, 100.0), ring(6, (15.0, 6.0)) + (190.0, 100.0)
    points[48:60], points[60:68] = ring(12, (30.0, 12.0)) + (150.0, 200.0), ring(8, (20.0, 3.0)) + (150.0, 200.0)
    return points


def test_region_masks_grow_the_eye_and_lip_outlines_by_their_margins() -> None:
    regions = region_masks(_schematic_face(), 300, 300)
    eyes, mouth = regions["eyes"], regions["mouth"]
    assert eyes[100, 110] and eyes[100, 190] and mouth[200, 150]  # the outlines' insides
    # the eyes grow by 0.06 × 200 = 12 px beyond the lower lid (y ≈ 105), the mouth by 6 px beyond the lips (212)
    assert eyes[105 + 11, 110] and not eyes[105 + 14, 110]
    assert mouth[212 + 5, 150] and not mouth[212 + 8, 150]
    assert not eyes[150, 150] and not mouth[150, 150] and not (eyes & mouth).any()


def test_the_torso_region_lies_below_the_chin_around_the_jaws_centre() -> None:
    face = _schematic_face()
    face[8] = (150.0, 240.0)  # the chin, 28 px under the lips
    torso = region_masks(face, 400, 400)["torso"]
    # from 0.05 × 200 = 10 px under the chin (rows whose centre is at y ≥ 250), 0.75 × 200 = 150 px either side
    assert torso[250, 150] and not torso[248, 150] and torso[399, 150]
    assert torso[300, 1] and torso[300, 299] and not torso[300, 301]
    assert not torso[:250].any()


def test_region_scores_give_psnr_and_the_signed_brightness() -> None:
    _, target = _frames()
    regions = {"eyes": np.zeros(target.shape[:2], bool), "mouth": np.zeros(target.shape[:2], bool)}
    regions["eyes"][10:30, 10:70] = True
    regions["mouth"][60:80, 20:60] = True
    paler = target.copy()
    paler[regions["eyes"]] = np.minimum(target[regions["eyes"]].astype(np.int16) + 10, 255).astype(np.uint8)
    scores = region_scores(paler, target, regions)
    raised = paler[regions["eyes"]].astype(np.float32) - target[regions["eyes"]]
    assert scores["bias_eyes"] == pytest.approx(float(raised.mean())) and scores["bias_eyes"] > 5
    assert scores["psnr_eyes"] == pytest.approx(10 * math.log10(255**2 / float(np.square(raised).mean())))
    assert math.isinf(scores["psnr_mouth"]) and scores["bias_mouth"] == 0.0
    regions["mouth"][:] = False
    assert "psnr_mouth" not in region_scores(paler, target, regions)  # an empty region gives no score


def _landmarks(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(100, 400, (68, 2)).astype(np.float32)


def test_lmd_is_translation_free_mean_distance_in_512_pixel_units() -> None:
    target = _landmarks()
    assert mouth_landmark_distance(target + np.float32([13.0, -7.0]), target, 512) == pytest.approx(0.0, abs=1e-4)
    moved = target.copy()
    moved[48:68:2, 0] += 3.0  # half the mouth points 3 px to the right, the other half stays
    # Centring moves every point by −1.5 px: all 20 points end 1.5 px from their target.
    assert mouth_landmark_distance(moved, target, 512) == pytest.approx(1.5, abs=1e-4)
    assert mouth_landmark_distance(moved * 2, target * 2, 1024) == pytest.approx(1.5, abs=1e-4)  # 512-px units
    other = target.copy()
    other[:48] += 50.0  # points outside the mouth do not count
    assert mouth_landmark_distance(other, target, 512) == pytest.approx(0.0, abs=1e-4)


def test_lmd_splits_into_a_constant_mouth_offset_and_the_motion() -> None:
    """`mouth_shape_offset`: a mouth that is always 2 px too open (lower lip points 2 px lower in every frame) is all
    offset; a mouth right on average but wrong frame by frame is all motion; frames without a face are left out."""
    rng = np.random.default_rng(0)
    targets = np.stack([_landmarks(seed) for seed in range(6)])
    lower = [55, 56, 57, 58, 59, 65, 66, 67]  # outer and inner lower lip
    opened = targets.copy()
    opened[:, lower, 1] += 2.0
    opened_offset, motion = mouth_shape_offset(opened, targets, 512)
    lmd = np.mean([mouth_landmark_distance(p, t, 512) for p, t in zip(opened, targets)])
    assert opened_offset == pytest.approx(lmd, abs=1e-6) and motion == pytest.approx(0.0, abs=1e-6)
    wobbling = targets.copy()
    wobbling[:, 48:68] += rng.normal(0.0, 1.0, (6, 20, 2))
    wobbling[:, 48:68] -= (wobbling - targets)[:, 48:68].mean(0)  # right on average
    offset, motion = mouth_shape_offset(wobbling, targets, 512)
    assert offset == pytest.approx(0.0, abs=1e-4) and motion > 0.5  # float32 landmarks
    missing = opened.copy()
    missing[2] = np.nan
    # the same offset in every frame left, in pixels of a 512-wide frame (half at 1024)
    assert mouth_shape_offset(missing, targets, 1024)[0] == pytest.approx(0.5 * opened_offset, abs=1e-6)
    assert mouth_shape_offset(np.full_like(targets, np.nan), targets, 512) is None
    assert mouth_shape_offset(targets[:0], targets[:0], 0) is None  # no frame at all


def test_eyes_that_never_blink_score_a_small_error_and_a_small_spread() -> None:
    """A render whose eyes stay open through the truth's blinks: blink_error barely notices (blinks are a few frames),
    eyes/openness_std_ratio does; a render that blinks with the truth correlates with it; missing faces are left out."""
    frames = np.arange(100)
    truth = np.where(np.isin(frames % 25, (11, 12, 13)), 0.12, 0.3) + 0.005 * np.sin(frames)  # a blink a second
    open_eyes, metrics_of = np.full(100, 0.3), lambda ours: eye_metrics(ours, truth)[0]
    still = metrics_of(open_eyes)
    assert still["blink_error"] < 0.03 and still["eyes/openness_std_ratio"] == 0.0
    assert "eyes/openness_correlation" in eye_metrics(open_eyes, truth)[1]
    blinking = truth * 0.9 + 0.03
    blinking[::10] = np.nan  # no face in those frames
    moving = metrics_of(blinking)
    assert moving["eyes/openness_std_ratio"] == pytest.approx(0.9, abs=0.02)
    assert moving["eyes/openness_correlation"] == pytest.approx(1.0)
    assert eye_metrics(np.full(100, np.nan), truth) == ({}, dict.fromkeys(
        ("blink_error", "eyes/openness_std_ratio", "eyes/openness_correlation"), "no frame with a face in both videos"))


def test_mouth_opening_and_face_mask() -> None:
    points = _landmarks()
    points[[36, 45]] = [[100, 100], [200, 100]]
    points[[61, 62, 63]] = [[140, 200], [150, 200], [160, 200]]
    points[[67, 66, 65]] = [[140, 210], [150, 210], [160, 210]]
    assert mouth_opening(points) == pytest.approx(0.1)
    square = np.float32([[10.5, 10.5], [30.5, 10.5], [30.5, 20.5], [10.5, 20.5]])
    mask = face_mask(np.concatenate([square, np.repeat(square[:1], 64, 0)]), 40, 50)
    assert mask[10:21, 10:31].all() and mask.sum() == 11 * 21


def test_landmark_sync_finds_a_known_offset() -> None:
    rng = np.random.default_rng(1)
    envelope = np.convolve(rng.random(300), np.ones(5) / 5, mode="same")
    opening = np.roll(envelope, 4)  # the mouth follows the sound by 4 frames
    opening[:4] = np.nan  # frames without a face are left out
    score = landmark_sync(opening, envelope, max_offset=10)
    assert score is not None and score.offset == 4 and score.correlation == pytest.approx(1.0, abs=1e-6)
    assert landmark_sync(np.full(300, np.nan), envelope) is None


def test_speech_envelope_follows_a_tone_burst() -> None:
    samples = np.zeros(16000, np.float32)
    time = np.arange(3200) / 16000
    samples[6400:9600] = 0.5 * np.sin(2 * np.pi * 2000 * time)  # 0.4 … 0.6 s: frames 10 … 15 at 25 fps
    envelope = speech_envelope(samples, 25, 25.0)
    assert envelope.shape == (25,)
    assert envelope[11:15].min() > 0.3 and envelope[:8].max() < 0.02 and envelope[18:].max() < 0.02


def test_syncnet_crop_follows_syncnet_python() -> None:
    frame = np.zeros((400, 400, 3), np.uint8)
    frame[150:250, 150:250] = 255  # the face box, 100 px: bs = 50, crop 140 px wide, from y − 50 to y + 90
    crop = syncnet_crop(frame, np.float32([150, 150, 250, 250]))
    assert crop.shape == (224, 224, 3)
    rows = np.flatnonzero(crop[:, 112, 0] > 127)
    columns = np.flatnonzero(crop[112, :, 0] > 127)
    scale = 224 / 140
    assert rows[0] == pytest.approx(0, abs=1) and rows[-1] + 1 == pytest.approx(100 * scale, abs=1)
    assert columns[0] == pytest.approx(20 * scale, abs=1) and columns[-1] + 1 == pytest.approx(120 * scale, abs=1)
    padded = syncnet_crop(frame, np.float32([0, 0, 100, 100]))
    assert (padded[0, 0] == 110).all()


def test_parse_views() -> None:
    assert parse_views("dataset,front,yaw=±30,pitch=-20,spiral") == {
        "dataset": "dataset", "front": "front", "yaw+30": "yaw=30,pitch=0", "yaw-30": "yaw=-30,pitch=0",
        "pitch-20": "yaw=0,pitch=-20", "spiral": "spiral"}
    assert parse_views("yaw=15") == {"yaw+15": "yaw=15,pitch=0"}
    with pytest.raises(InputError, match="roll=10"):
        parse_views("front,roll=10")


def test_keys_are_documented_under_any_prefix() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "evaluation.md").read_text()
    assert all(f"| `{key}` |" in docs for key in KEYS)
    assert describe("psnr")[0] == "↑"
    assert describe("test/lmd")[0] == "↓"
    assert describe("view/yaw+30/sync/correlation")[0] == "↑"
    assert describe("test/gt/sync/offset_frames")[1].startswith("the ground truth")


def test_report_is_self_contained() -> None:
    prediction, target = _frames()
    report = ReportData(title="t", inputs={"a": "b"}, metrics={"psnr": math.inf, "view/front/id_distance": 0.3},
                        skipped={"lpips": "no weights"}, series={"psnr": np.array([30.0, math.inf, 31.0]),
                                                               "lmd": np.array([1.0, math.nan, 2.0])},
                        strip=[(0, target, prediction, prediction)], view_rows=[("views", (("front", target),))])
    page = render_html(report)
    assert "∞" in page and "no weights" in page and "<td>front</td>" in page
    assert len(re.findall(r'src=["\']data:image/(?:png|jpeg);base64,', page)) == 3
    assert not re.search(r'(src|href)=["\'](?!data:)', page)  # nothing is fetched when the page opens


def test_inception_sampler_keeps_every_kth_frame_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluation_fid, "FID_BATCH", 2)  # frames 0 and 2 in one pass, frame 4 at the end
    model = FIDInceptionV3()
    frames = [np.full((40, 30, 3), 40 * index, np.uint8) for index in range(5)]
    sampler = InceptionSampler(model, every=2)
    for frame in frames:
        sampler.observe(frame)
    features = sampler.finish()
    assert features.shape == (3, 2048)
    np.testing.assert_allclose(features, inception_features(model, frames[::2]), rtol=1e-4, atol=0)


def test_fid_metrics_need_two_frames_per_video() -> None:
    features = np.random.default_rng(0).normal(size=(3, 2048)).astype(np.float32)
    metrics, skipped = fid_metrics(features, features[:2] + 1.0, every=5)
    assert metrics["fid_frames"] == 2 and metrics["fid_every"] == 5 and metrics["fid"] > 0 and not skipped
    metrics, skipped = fid_metrics(features, features[:1], every=5)
    assert not metrics and "--fid-every" in skipped["fid"]
    assert fid_metrics(None, features, every=5) == ({}, {})  # no Inception: skipped once, by load_experts


def _track(descriptors: np.ndarray, arcface: np.ndarray | None) -> VideoTrack:
    frames = descriptors.shape[0]
    return VideoTrack(np.zeros((frames, 68, 2), np.float32), descriptors, arcface, None, None)


def test_identity_metrics_average_arcface_cosines_over_frames_with_both_faces() -> None:
    nan = np.full(512, np.nan, np.float32)
    unit = np.eye(512, dtype=np.float32)
    prediction = _track(np.zeros((3, 128), np.float32), np.stack([unit[0], unit[1], nan]))
    # Frame 0: the same direction, scaled (a mean of embeddings is not unit length); frame 1: 60° apart.
    reference = np.stack([3.0 * unit[0], 0.5 * unit[1] + math.sqrt(0.75) * unit[2], unit[2]])
    metrics, skipped = identity_metrics(prediction, np.full((3, 128), 0.1, np.float32), reference, every=4)
    assert metrics["id_arcface"] == pytest.approx((1.0 + 0.5) / 2) and not skipped
    assert metrics["id_frames"] == 3 and metrics["id_every"] == 4
    metrics, skipped = identity_metrics(prediction, np.full((3, 128), 0.1, np.float32), None, every=4)
    assert "id_arcface" not in metrics and not skipped  # no ArcFace loaded: skipped once, by load_experts
    missing = np.full((3, 512), np.nan, np.float32)
    _, skipped = identity_metrics(prediction, np.full((3, 128), np.nan, np.float32), missing, every=4)
    assert set(skipped) == {"id_distance", "id_arcface"}


def test_report_links_the_rendered_videos() -> None:
    page = render_html(ReportData(title="t", inputs={}, metrics={}, skipped={},
                                  videos={"yaw+30": "videos/yaw+30.mp4"}))
    assert '<a href="videos/yaw%2B30.mp4">yaw+30</a>' in page


def test_mouth_motion_ratios() -> None:
    rng = np.random.default_rng(0)
    reference = 0.1 + 0.05 * np.abs(rng.normal(size=200))
    same, _ = mouth_motion(reference.copy(), reference)
    assert same["mouth/opening_std_ratio"] == same["mouth/opening_mean_ratio"] == 1.0
    assert same["mouth/open_fraction"] == same["mouth/open_fraction_reference"] > 0
    still, _ = mouth_motion(np.full(200, reference.mean()), reference)
    assert still["mouth/opening_std_ratio"] == pytest.approx(0.0, abs=1e-12) and still["mouth/opening_mean_ratio"] == pytest.approx(1.0)
    assert still["mouth/open_fraction"] == 0.0
    half = reference.mean() + 0.5 * (reference - reference.mean())
    half[::7] = np.nan  # frames without a face are left out
    scaled, _ = mouth_motion(half, reference)
    assert scaled["mouth/opening_std_ratio"] == pytest.approx(0.5, abs=0.05)
    metrics, skipped = mouth_motion(np.full(200, np.nan), reference)
    assert not metrics and "needs 10" in skipped["mouth/opening_std_ratio"]
    metrics, skipped = mouth_motion(reference, np.full(200, 0.1))
    assert not metrics and "never moves" in skipped["mouth/open_fraction"]


def test_mouth_crop_is_centred_on_the_mouth_and_the_sheet_labels_rows() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    image[118:122, 90:110] = 255  # a bright mouth slit around (100, 120)
    points = np.zeros((68, 2), np.float32)
    points[48:68] = np.stack([np.linspace(90, 110, 20), np.full(20, 120.0)], 1)
    points[48], points[54] = (90, 120), (110, 120)
    crop = mouth_crop(image, points)
    assert crop.shape == (96, 96, 3)
    rows, cols = np.nonzero(crop[..., 0] > 128)
    assert abs(rows.mean() - 47.5) < 2 and abs(cols.mean() - 47.5) < 2  # the slit sits in the middle
    sheet = contact_sheet([("ground truth", ((0, crop), (5, crop))), ("render", ((0, crop),))])
    assert sheet.shape == (192, 150 + 2 * 96, 3)
    page = render_html(ReportData(title="t", inputs={}, metrics={"cross/es/mouth/opening_std_ratio": 0.9},
                                  skipped={}, mouth_rows=[("ground truth", ((0, crop),)), ("render", ((0, crop),))]))
    assert "mouth contact sheet" in page and "<td>es</td>" in page


def _textured_face(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 128² frame of fine random texture and a centred square 'face' mask."""
    rng = np.random.default_rng(seed)
    image = np.clip(128 + rng.normal(0, 40, (128, 128, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((128, 128), bool)
    mask[32:96, 32:96] = True
    return image, mask


def test_blur_cannot_win_the_detail_scores_and_noise_cannot_win_them_either() -> None:
    target, face = _textured_face()
    same = detail_scores(target, target, face)
    assert same["sharpness_ratio"] == pytest.approx(1.0) and math.isinf(same["detail_psnr_1"])
    blurred = detail_scores(cv2.GaussianBlur(target, (0, 0), 1.5), target, face)
    assert blurred["sharpness_ratio"] < 0.2
    noisy_image = np.clip(target.astype(np.int16) + np.random.default_rng(1).integers(-40, 41, target.shape),
                          0, 255).astype(np.uint8)
    noisy = detail_scores(noisy_image, target, face)
    assert noisy["sharpness_ratio"] > 1.2  # noise looks "sharp" …
    softened = cv2.addWeighted(target, 0.5, cv2.GaussianBlur(target, (0, 0), 1.5), 0.5, 0)
    half_sharp = detail_scores(softened, target, face)
    for band in ("detail_psnr_1", "detail_psnr_2"):  # … but only matching detail has a small band error
        assert half_sharp[band] > blurred[band] and half_sharp[band] > noisy[band]
    # the gain says which side of a blur a render is on: an empty band scores 0 dB, wrong detail below it
    flat = detail_scores(np.full_like(target, 128), target, face)
    assert flat["detail_gain_1"] == pytest.approx(0.0) and flat["detail_gain_2"] == pytest.approx(0.0)
    other_texture, _ = _textured_face(seed=2)
    misplaced = detail_scores(other_texture, target, face)
    assert misplaced["sharpness_ratio"] == pytest.approx(1.0, abs=0.1)  # as sharp as the truth, but wrong
    for band in ("detail_gain_1", "detail_gain_2"):
        assert misplaced[band] < -1.0 < 0.0 < blurred[band] < half_sharp[band]
        assert math.isinf(same[band])
    assert detail_gain(error=16.0, energy=0.0) is None  # a flat truth has no detail to gain on: no score, not ±inf
    assert detail_gain(error=4.0, energy=4.0) == pytest.approx(0.0)  # twice the detail errs by all of it
    assert detail_gain(error=0.4, energy=4.0) == pytest.approx(10.0)
    assert detail_scores(target, target, None) == {} and detail_scores(target, target, ~np.ones_like(face)) == {}


def test_sharpness_of_unpaired_renders_against_the_frontal_one() -> None:
    image, face = _textured_face()
    sharp = laplacian_variance(image, face)
    soft = laplacian_variance(cv2.GaussianBlur(image, (0, 0), 1.0), face)

    def track(values: list[float]) -> VideoTrack:
        count = len(values)
        return VideoTrack(np.zeros((count, 68, 2), np.float32), np.full((count, 128), np.nan, np.float32), None, None,
                          None, sharpness=np.array(values))

    frontal = track([sharp, sharp, math.nan])
    assert sharpness_metrics(track([soft, soft, soft]), frontal)[0]["sharpness_ratio"] == pytest.approx(soft / sharp)
    assert sharpness_metrics(track([soft] * 5), frontal)[0]["sharpness_ratio"] == pytest.approx(soft / sharp)
    assert "sharpness_ratio" in sharpness_metrics(track([math.nan] * 3), frontal)[1]


def test_detail_crops_follow_the_face() -> None:
    points = np.zeros((68, 2))
    points[36:48] = [200.0, 220.0]
    points[36], points[45] = [180.0, 220.0], [320.0, 220.0]
    points[17:27] = [250.0, 190.0]
    points[48:68] = [250.0, 380.0]
    image = np.zeros((512, 512, 3), np.uint8)
    image[370:390, 240:260] = 255  # a white mouth
    crops = detail_crops(image, points)
    assert set(crops) == {"eyes", "mouth", "hair"}
    assert all(crop.shape == (DETAIL_CROP_SIZE, DETAIL_CROP_SIZE, 3) for crop in crops.values())
    assert crops["mouth"][54:74, 54:74].mean() > 200 and crops["eyes"].max() == 0 and crops["hair"].max() == 0


def test_background_measures_see_a_smeared_backdrop_and_ignore_the_person() -> None:
    from deltaplane.evaluation.pixels import BACKGROUND_SIZE, background_change, background_flicker, far_background

    person = np.zeros((512, 512), bool)
    person[150:512, 180:330] = True  # head and torso in the middle
    far = far_background(~person)
    assert far.shape == (BACKGROUND_SIZE, BACKGROUND_SIZE) and far.any() and not far[60:, 50:80].any()
    rng = np.random.default_rng(0)
    plate = rng.uniform(0, 255, (BACKGROUND_SIZE, BACKGROUND_SIZE))
    frontal = np.stack([plate] * 5)
    moving_person = frontal.copy()
    moving_person[:, 40:, 45:83] = rng.uniform(0, 255, (5, BACKGROUND_SIZE - 40, 38))  # only near the person
    masks = np.stack([far] * 5)
    assert background_change(moving_person, frontal, masks) == {"background/view_change": 0.0}
    assert background_flicker(moving_person, masks) == {"background/flicker": 0.0}
    smeared = frontal + rng.normal(0, 20, frontal.shape)
    assert background_change(smeared, frontal, masks)["background/view_change"] > 10
    assert background_flicker(smeared, masks)["background/flicker"] > 10
    empty = np.zeros_like(masks)
    assert background_change(frontal, frontal, empty) == {} == background_flicker(frontal, empty)
