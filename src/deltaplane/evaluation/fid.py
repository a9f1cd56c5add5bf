"""FID of streamed videos: Inception pool features of every k-th frame are collected as the frames go by (only the
2048-D vectors are kept), and two such sets are compared at the end."""

from __future__ import annotations

import numpy as np
from jaxtyping import Float, UInt8
from numpy import ndarray

from deltaplane.errors import InputError
from deltaplane.metrics.fid import FEATURE_DIM, FIDInceptionV3, fid_from_features, inception_features

FID_BATCH = 16
"""Frames per Inception forward pass (299² inputs: ~17 MB of float32 per batch)."""


class InceptionSampler:
    """Inception features of every `every`-th frame passed to `observe`, `FID_BATCH` frames per forward pass."""

    def __init__(self, model: FIDInceptionV3, every: int) -> None:
        self._model, self._every = model, every
        self._seen = 0
        self._pending: list[ndarray] = []
        self._features: list[ndarray] = []

    def observe(self, rgb: UInt8[ndarray, "height width 3"]) -> None:
        if self._seen % self._every == 0:
            self._pending.append(rgb)
            if len(self._pending) == FID_BATCH:
                self._flush()
        self._seen += 1

    def _flush(self) -> None:
        if self._pending:
            self._features.append(inception_features(self._model, self._pending))
            self._pending = []

    def finish(self) -> Float[ndarray, "samples 2048"]:
        self._flush()
        return np.concatenate(self._features) if self._features else np.zeros((0, FEATURE_DIM), np.float32)


def fid_metrics(prediction: Float[ndarray, "samples 2048"] | None, reference: Float[ndarray, "samples 2048"] | None,
                every: int) -> tuple[dict, dict]:
    """fid, fid_frames (the smaller set's size) and fid_every, or the reason FID is skipped. Nothing without
    features (no Inception loaded: `load_experts` gives that reason)."""
    if prediction is None or reference is None:
        return {}, {}
    count = min(prediction.shape[0], reference.shape[0])
    if count < 2:
        return {}, {"fid": f"{count} sampled frame(s) in the shorter video; FID needs at least 2 (lower --fid-every)"}
    try:
        value = fid_from_features(prediction, reference)
    except InputError as error:
        return {}, {"fid": str(error)}
    return {"fid": value, "fid_frames": count, "fid_every": every}, {}
