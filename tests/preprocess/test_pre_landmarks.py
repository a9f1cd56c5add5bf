"""Face tracking on real clips: landmarks on the face, dlib and mediapipe agree, main-face choice, loss and recovery."""

from __future__ import annotations

from itertools import islice

import av
import cv2
import numpy as np
import pytest

from deltaplane.errors import InputError
from deltaplane.preprocess.landmarks import (
    FaceTracker,
    eye_openness,
    fill_missing,
    landmark_feature,
    missing_ranges,
)

# dlib 68-point index → the mediapipe mesh point at the same anatomical place.
MATCHING_POINTS = ((36, 33), (45, 263), (39, 133), (42, 362), (30, 4), (33, 2), (48, 61), (54, 291), (8, 152))


def decode(path, count: int, step: int = 1) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in islice(container.decode(video=0), 0, count * step, step)]


def eye_distance(landmarks68: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks68[45] - landmarks68[36]))


def agreement(observation) -> float:
    """Mean distance between dlib points and the matching mesh points, in outer-eye-corner distances."""
    distances = [np.linalg.norm(observation.landmarks68[a] - observation.mesh[b, :2]) for a, b in MATCHING_POINTS]
    return float(np.mean(distances)) / eye_distance(observation.landmarks68)


def test_no_face_gives_none_and_bad_frames_are_refused():
    rows = np.linspace(0, 255, 480, dtype=np.float32)[:, None, None]
    gradient = np.broadcast_to(rows, (480, 640, 3)).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    with FaceTracker() as tracker:
        assert tracker.track(gradient) is None
        assert tracker.track(noise) is None
        with pytest.raises(InputError):
            tracker.track(gradient[..., 0])
        with pytest.raises(InputError):
            tracker.track(gradient.astype(np.float32))


@pytest.mark.parametrize("clip", ["katie_8s", "obama_20s", "noaudio_3s"])
def test_landmarks_land_on_the_face(shared_data, clip):
    frames = decode(shared_data / "clips" / f"{clip}.mp4", 40)
    with FaceTracker() as tracker:
        observations = [tracker.track(frame) for frame in frames]
    assert all(observation is not None for observation in observations)
    for observation in observations:
        assert observation.landmarks68.shape == (68, 2) and observation.landmarks68.dtype == np.float32
        assert observation.mesh.shape == (478, 3) and observation.mesh.dtype == np.float32
        assert observation.num_faces == 1
        x0, y0, x1, y1 = observation.box
        nose = observation.landmarks68[30]
        assert x0 < nose[0] < x1 and y0 < nose[1] < y1
        assert observation.landmarks68[45, 0] > observation.landmarks68[36, 0]  # subject's left on the image right
    assert np.median([agreement(observation) for observation in observations]) < 0.05
    assert max(agreement(observation) for observation in observations) < 0.12


def test_small_face_in_a_tall_frame_is_found(shared_data):
    frames = decode(shared_data / "clips" / "portrait_1080x1920_20s.mp4", 15, step=10)
    with FaceTracker() as tracker:
        observations = [tracker.track(frame) for frame in frames]
    assert all(observation is not None for observation in observations)
    height, width = frames[0].shape[:2]
    for observation in observations:
        assert 0 < observation.box[0] < observation.box[2] < width and 0 < observation.box[1] < observation.box[3]
        assert (observation.box[2] - observation.box[0]) < 0.5 * width
        assert agreement(observation) < 0.12


def test_the_bigger_of_two_faces_is_tracked_and_both_are_counted(shared_data):
    katie = decode(shared_data / "clips" / "katie_8s.mp4", 20)
    obama = decode(shared_data / "clips" / "obama_20s.mp4", 20)
    for big_on_left in (True, False):
        with FaceTracker() as tracker:
            for big, small in zip(katie, obama):
                canvas = np.zeros((512, 512 + 300, 3), np.uint8)
                big_x, small_x = (0, 512) if big_on_left else (300, 0)
                canvas[:, big_x:big_x + 512] = big
                canvas[106:406, small_x:small_x + 300] = cv2.resize(small, (300, 300), interpolation=cv2.INTER_AREA)
                observation = tracker.track(canvas)
                assert observation is not None
                assert big_x < observation.landmarks68[30, 0] < big_x + 512
                assert observation.num_faces == 2


def test_tracking_recovers_after_the_face_leaves(shared_data):
    frames = decode(shared_data / "clips" / "may_5s.mp4", 10)
    blank = np.full_like(frames[0], 90)
    with FaceTracker() as tracker:
        seen = [tracker.track(frame) is not None for frame in frames[:5] + [blank] * 3 + frames[5:]]
    assert seen == [True] * 5 + [False] * 3 + [True] * 5


def test_eye_openness_scale(shared_data):
    landmarks = np.zeros((68, 2))
    for corner_out, top_out, top_in, corner_in, bottom_in, bottom_out, x in (
            (36, 37, 38, 39, 40, 41, 0.0), (42, 43, 44, 45, 46, 47, 100.0)):
        landmarks[[corner_out, corner_in]] = [[x, 0.0], [x + 30.0, 0.0]]
        landmarks[[top_out, top_in]] = [[x + 10.0, -4.5], [x + 20.0, -4.5]]
        landmarks[[bottom_out, bottom_in]] = [[x + 10.0, 4.5], [x + 20.0, 4.5]]
    assert eye_openness(landmarks) == pytest.approx(0.3)
    frames = decode(shared_data / "clips" / "katie_8s.mp4", 25)
    with FaceTracker() as tracker:
        openness = [eye_openness(tracker.track(frame).landmarks68) for frame in frames]
    assert 0.15 < np.median(openness) < 0.45


def test_landmark_feature_maps_the_frame_to_minus_one_one():
    landmarks = np.zeros((68, 2), np.float32)
    landmarks[30], landmarks[45], landmarks[36] = (320, 240), (640, 0), (0, 480)
    np.testing.assert_allclose(landmark_feature(landmarks, 640, 480), [0, 0, 1, -1, -1, 1])


def test_fill_missing_interpolates_short_gaps():
    values = np.arange(200, dtype=np.float32).reshape(100, 2)
    values[10:13] = np.nan
    values[0] = np.nan
    filled, ranges = fill_missing(values, fps=25.0)
    assert ranges == [(0, 1), (10, 13)]
    np.testing.assert_allclose(filled[10:13, 0], [20, 22, 24])
    np.testing.assert_allclose(filled[0], filled[1])
    assert missing_ranges(filled) == []


def test_fill_missing_refuses_long_or_frequent_gaps():
    values = np.zeros((1000, 68, 2), np.float32)
    values[500:530] = np.nan  # 1.2 s at 25 fps
    with pytest.raises(InputError, match=r"500–529 \(20\.00–21\.20 s\)"):
        fill_missing(values, fps=25.0)
    values = np.zeros((100, 3), np.float32)
    values[::10] = np.nan  # 10 % of frames, each gap short
    with pytest.raises(InputError, match="10/100"):
        fill_missing(values)
    with pytest.raises(InputError, match="no face"):
        fill_missing(np.full((5, 2), np.nan))


def test_the_mesh_derived_box_matches_dlibs_hog_detector(shared_data):
    """The shape predictor is sensitive to its box: ours must stand in for the HOG detector's."""
    import dlib

    from deltaplane.preprocess.landmarks import dlib_box, shape_predictor_path

    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(shape_predictor_path())
    overlaps, differences = [], []
    with FaceTracker() as tracker:
        for clip in ("katie_8s", "macron_fr_50s"):
            for frame in decode(shared_data / "clips" / f"{clip}.mp4", 8, step=5):
                observation = tracker.track(frame)
                (rect,) = hog(frame, 0)
                reference = np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], np.float64)
                box = dlib_box(observation.mesh) - 0.5  # to dlib's integer pixel centres
                inter = np.prod(np.clip(np.minimum(box[2:], reference[2:]) - np.maximum(box[:2], reference[:2]), 0,
                                        None))
                overlaps.append(inter / (np.prod(box[2:] - box[:2]) + np.prod(reference[2:] - reference[:2]) - inter))
                shape = predictor(frame, rect)
                hog_points = np.array([(p.x + 0.5, p.y + 0.5) for p in shape.parts()])
                differences.append(np.linalg.norm(hog_points - observation.landmarks68, axis=1).mean()
                                   / eye_distance(hog_points))
    assert np.median(overlaps) > 0.8
    assert np.median(differences) < 0.02
