"""Label maps of aligned real frames: regions exist, nest and sit where a face's parts are."""

from __future__ import annotations

from itertools import islice

import av
import numpy as np
import pytest

from deltaplane.preprocess.align import alignment_affine, transform_points, warp_to_template
from deltaplane.preprocess.landmarks import FaceTracker
from deltaplane.preprocess.masks import (
    BACKGROUND,
    FACE_MIDDLE,
    HEAD,
    LOWER_FACE,
    TORSO,
    UPPER_FACE,
    PersonSegmenter,
    face_polygon,
    masks_from_parsing,
    parsing_map,
)


def centroid_row(mask: np.ndarray) -> float:
    return float(np.nonzero(mask)[0].mean())


@pytest.fixture(scope="module")
def aligned(shared_data):
    """(aligned frame, aligned 68 landmarks, aligned mesh) for a few frames of two clips."""
    samples = []
    with FaceTracker() as tracker:
        for clip in ("katie_8s", "obama_20s"):
            with av.open(str(shared_data / "clips" / f"{clip}.mp4")) as container:
                for index, frame in enumerate(islice(container.decode(video=0), 30)):
                    observation = tracker.track(frame.to_ndarray(format="rgb24"))
                    if index % 10 == 0:
                        affine = alignment_affine(observation.landmarks68, 512)
                        samples.append((warp_to_template(frame.to_ndarray(format="rgb24"), affine, 512),
                                        transform_points(observation.landmarks68, affine),
                                        transform_points(observation.mesh[:, :2], affine)))
    return samples


@pytest.mark.parametrize("use_mesh", [True, False])
def test_regions_are_present_nested_and_in_place(aligned, use_mesh):
    with PersonSegmenter() as segmenter:
        for image, landmarks, mesh in aligned:
            labels = parsing_map(image, landmarks, segmenter, mesh if use_mesh else None)
            assert labels.shape == (512, 512) and labels.dtype == np.uint8 and labels.max() <= LOWER_FACE
            masks = masks_from_parsing(labels)
            for name, mask in masks.items():
                assert mask.any(), name
            assert 0.05 < masks["face"].mean() < 0.4
            assert not (masks["face"] & ~masks["head"]).any()
            assert not (masks["lower_face"] & ~masks["face"]).any()
            # Upper face above lower face; the nose tip lies in neither; torso below the head; hair above the face.
            assert centroid_row(masks["upper_face"]) < landmarks[30, 1] < centroid_row(masks["lower_face"])
            assert labels[int(landmarks[30, 1]), int(landmarks[30, 0])] == FACE_MIDDLE
            assert labels[int(landmarks[62, 1]), int(landmarks[62, 0])] == LOWER_FACE
            assert labels[int(landmarks[37, 1]) + 1, int(landmarks[37, 0])] == UPPER_FACE
            assert centroid_row(masks["torso"]) > landmarks[8, 1]
            hair = labels == HEAD
            assert np.nonzero(hair)[0].min() < np.nonzero(masks["face"])[0].min()
            assert labels[0, 0] == BACKGROUND or labels[0, -1] == BACKGROUND  # the top corners show the room


def test_face_polygon_without_mesh_reaches_the_forehead(aligned):
    _, landmarks, mesh = aligned[0]
    outline = face_polygon(landmarks)
    assert outline[:, 1].min() < landmarks[17:27, 1].min() - 20  # above the brows
    assert abs(outline[:, 1].min() - face_polygon(landmarks, mesh)[:, 1].min()) < 60  # near the mesh's forehead


def test_masks_from_parsing_thresholds():
    labels = np.arange(6, dtype=np.uint8).reshape(2, 3)
    masks = masks_from_parsing(labels)
    assert masks["background"].sum() == 1 and masks["torso"].sum() == 1
    assert masks["head"].sum() == 4 and masks["face"].sum() == 3
    assert masks["upper_face"][labels == UPPER_FACE].all() and masks["lower_face"][labels == LOWER_FACE].all()
    assert not masks["torso"][labels != TORSO].any()
