"""Per-frame pixel metrics on uint8 RGB frames: PSNR and SSIM over the full frame and a face mask, LPIPS.

PSNR and SSIM have the definitions of `deltaplane.metrics.image` (the reference implementation, on tensors); this
is a fast OpenCV/numpy path for whole videos (~12 ms per 512² frame instead of ~60 ms), and a test pins
that the two agree.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from jaxtyping import Bool, Float, UInt8
from numpy import ndarray

from deltaplane.metrics.lpips import LPIPS

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2
ERROR_GAIN = 4.0
"""The error map shows 4·|prediction − target| (mean over channels), clipped to 1."""


class SsimWorkspace:
    """Float32 buffers that `ssim_map` reuses from frame to frame: allocating ~20 fresh 3 MB arrays per 512² frame
    costs as much as the arithmetic (page faults), so a video keeps one workspace per frame size."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        pad = SSIM_WINDOW // 2
        valid = (shape[0] - 2 * pad, shape[1] - 2 * pad, shape[2])
        self.shape = tuple(shape)
        self.kernel = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA, cv2.CV_32F)
        self.images = np.empty((3, *shape), np.float32)  # x, y, a product of the two
        self.blurred = np.empty((5, *shape), np.float32)  # μx, μy, E[x²], E[y²], E[xy]
        self.terms = np.empty((4, *valid), np.float32)
        self.channel_mean = np.full((1, shape[2]), 1.0 / shape[2], np.float32)

    def _blur(self, image: ndarray, index: int) -> ndarray:
        # Interior positions never reach the border, so any border mode gives the valid ('unpadded') values.
        cv2.sepFilter2D(image, cv2.CV_32F, self.kernel, self.kernel, dst=self.blurred[index],
                        borderType=cv2.BORDER_REFLECT)
        pad = SSIM_WINDOW // 2
        return self.blurred[index][pad:-pad, pad:-pad]

    def ssim_map(self, prediction: UInt8[ndarray, "H W 3"], target: UInt8[ndarray, "H W 3"]) -> Float[ndarray, "h w"]:
        """SSIM per position (mean over channels) on the valid region: rows and columns 5 … size − 6."""
        x, y, product = self.images
        np.copyto(x, prediction)
        x *= 1.0 / 255.0
        np.copyto(y, target)
        y *= 1.0 / 255.0
        mu_x, mu_y = self._blur(x, 0), self._blur(y, 1)
        mean_xx = self._blur(np.multiply(x, x, out=product), 2)
        mean_yy = self._blur(np.multiply(y, y, out=product), 3)
        mean_xy = self._blur(np.multiply(x, y, out=product), 4)
        mu_xy, numerator, denominator, scratch = self.terms
        np.multiply(mu_x, mu_y, out=mu_xy)
        np.multiply(mu_x, mu_x, out=scratch)
        np.subtract(mean_xx, scratch, out=numerator)  # σx²
        np.add(scratch, SSIM_C1, out=denominator)  # μx² + C1
        np.multiply(mu_y, mu_y, out=scratch)
        denominator += scratch  # μx² + μy² + C1
        np.subtract(mean_yy, scratch, out=scratch)  # σy²
        numerator += scratch
        numerator += SSIM_C2  # σx² + σy² + C2
        denominator *= numerator
        np.subtract(mean_xy, mu_xy, out=numerator)  # σxy
        numerator *= 2.0
        numerator += SSIM_C2
        mu_xy *= 2.0
        mu_xy += SSIM_C1
        numerator *= mu_xy
        numerator /= denominator
        return cv2.transform(numerator, self.channel_mean)  # [h, w]: numpy's mean over channels is 30× slower


def ssim_map(prediction: UInt8[ndarray, "H W 3"], target: UInt8[ndarray, "H W 3"]) -> Float[ndarray, "h w"]:
    """SSIM per position (mean over channels) on the valid region: rows and columns 5 … size − 6 (h = H − 10)."""
    return SsimWorkspace(prediction.shape).ssim_map(prediction, target)


def _psnr(squared_error_sum: float, count: int) -> float:
    mse = squared_error_sum / (count * 255.0**2)
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def frame_scores(prediction: UInt8[ndarray, "H W 3"], target: UInt8[ndarray, "H W 3"],
                 face: Bool[ndarray, "H W"] | None, workspace: SsimWorkspace | None = None) -> dict[str, float]:
    """psnr / ssim of the whole frame and, with a face mask, psnr_face / ssim_face over the masked pixels
    (SSIM positions whose window centre is inside the mask). Identical frames give psnr = inf, ssim = 1."""
    if workspace is None or workspace.shape != prediction.shape:
        workspace = SsimWorkspace(prediction.shape)
    similarity = workspace.ssim_map(prediction, target)
    scores = {"psnr": _psnr(cv2.norm(prediction, target, cv2.NORM_L2SQR), prediction.size),
              "ssim": float(similarity.mean())}
    if face is not None and face.any():
        pad = SSIM_WINDOW // 2
        inner = face[pad:-pad, pad:-pad]
        mask = face.astype(np.uint8)
        scores["psnr_face"] = _psnr(cv2.norm(prediction, target, cv2.NORM_L2SQR, mask=mask), int(mask.sum()) * 3)
        scores["ssim_face"] = float(similarity[inner].mean()) if inner.any() else math.nan
    return scores


def region_scores(prediction: UInt8[ndarray, "H W 3"], target: UInt8[ndarray, "H W 3"],
                  regions: dict[str, Bool[ndarray, "H W"]]) -> dict[str, float]:
    """psnr_NAME over each non-empty region's pixels, and bias_NAME: the mean of prediction − target there in grey
    levels (0–255, all channels), positive for a region rendered paler than it is. The bias tells a region that is
    wrong in one direction (washed out, darkened) from one that is only noisy."""
    scores = {}
    for name, mask in regions.items():
        if mask.any():
            difference = prediction[mask].astype(np.float32) - target[mask].astype(np.float32)  # [pixels, 3]
            scores[f"psnr_{name}"] = _psnr(float(np.square(difference).sum()), difference.size)
            scores[f"bias_{name}"] = float(difference.mean())
    return scores


def error_map(prediction: UInt8[ndarray, "H W 3"], target: UInt8[ndarray, "H W 3"]) -> UInt8[ndarray, "H W 3"]:
    """4·|error| (mean over channels) through the inferno colour map, as RGB."""
    error = np.abs(prediction.astype(np.float32) - target.astype(np.float32)).mean(axis=2) / 255.0
    grey = np.clip(error * ERROR_GAIN * 255.0, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO)[..., ::-1].copy()


def _signed(frame: ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(frame).to(device).permute(2, 0, 1)[None].float() / 127.5 - 1.0  # [1, 3, H, W]


@torch.no_grad()
def lpips_distance(model: LPIPS, prediction: UInt8[ndarray, "H W 3"], target: UInt8[ndarray, "H W 3"]) -> float:
    """LPIPS of one frame pair, on RGB in [-1, 1] as the lpips package expects (not Talk3D's 0–255 BGR quirk)."""
    device = next(model.parameters()).device
    return float(model(_signed(prediction, device), _signed(target, device))[0])


DETAIL_BANDS = 2
"""Laplacian-pyramid bands whose PSNR `detail_scores` reports: band 1 is the full-resolution detail (pores,
lashes, hair strands at 512²), band 2 the next octave."""


def _gray(image: UInt8[ndarray, "H W 3"]) -> Float[ndarray, "H W"]:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)


def laplacian_variance(image: UInt8[ndarray, "H W 3"], mask: Bool[ndarray, "H W"]) -> float:
    """Sharpness: the variance of the 3×3 Laplacian (cv2.Laplacian, ksize 1) of the grey image over the masked
    pixels (NaN for an empty mask). A blurred image scores lower; it does not need a reference."""
    if not mask.any():
        return math.nan
    return float(cv2.Laplacian(_gray(image), cv2.CV_64F, ksize=1)[mask].var())


def laplacian_bands(gray: Float[ndarray, "H W"], levels: int) -> list[Float[ndarray, "h w"]]:
    """The first `levels` bands of the Laplacian pyramid: band k = G_k − upsample(G_{k+1}), G_0 = the image,
    G_{k+1} = pyrDown(G_k)."""
    bands, level = [], gray
    for _ in range(levels):
        smaller = cv2.pyrDown(level)
        bands.append(level - cv2.pyrUp(smaller, dstsize=(level.shape[1], level.shape[0])))
        level = smaller
    return bands


def detail_gain(error: float, energy: float) -> float | None:
    """A band's gain in dB from the sums of its squared error and of the truth's squared band: 0 for an empty
    predicted band (a blur: the error is the truth's whole energy), above 0 for detail nearer the truth than none,
    inf for an exact match; None when the truth's band is empty."""
    if energy == 0:
        return None
    return math.inf if error == 0 else 10.0 * math.log10(energy / error)


def detail_scores(prediction: UInt8[ndarray, "H W 3"], target: UInt8[ndarray, "H W 3"],
                  face: Bool[ndarray, "H W"] | None) -> dict[str, float]:
    """sharpness_ratio (Laplacian variance of the prediction over the target's, inside the face mask),
    detail_psnr_K: PSNR (peak 255) between the grey images' Laplacian-pyramid band K inside the face mask (band K
    is at 1/2^(K−1) resolution; the mask is shrunk with it), and detail_gain_K: the target's band energy over that
    band error, in dB. A blurred prediction has empty bands, so its error is the target's whole detail energy: its
    gain is 0 dB. Added noise raises the error too: only matching detail scores above 0. The PSNR alone does not
    tell a blur from wrong detail (a blurred render can out-score a sharp one whose detail is misplaced); the gain
    says which side of the blur a render is on."""
    if face is None or not face.any():
        return {}
    scores = {}
    reference = laplacian_variance(target, face)
    if reference > 0:
        scores["sharpness_ratio"] = laplacian_variance(prediction, face) / reference
    mask = face.astype(np.float32)
    for band, (predicted, truth) in enumerate(zip(laplacian_bands(_gray(prediction), DETAIL_BANDS),
                                                  laplacian_bands(_gray(target), DETAIL_BANDS)), start=1):
        inside = cv2.resize(mask, (truth.shape[1], truth.shape[0]), interpolation=cv2.INTER_AREA) > 0.5
        if inside.any():
            error = float(np.square(predicted - truth)[inside].sum())
            scores[f"detail_psnr_{band}"] = _psnr(error, int(inside.sum()))
            gain = detail_gain(error, float(np.square(truth)[inside].sum()))
            if gain is not None:
                scores[f"detail_gain_{band}"] = gain
    return scores


BACKGROUND_SIZE = 128
"""Side at which the background measures compare frames (grey levels; a static plate should not change at all)."""
BACKGROUND_MARGIN = 0.1
"""Background pixels count only this far (fraction of the frame side) from anything that is not background in the
ground truth, so that a head turned by ±30° does not enter the measure."""


def small_grey(image: UInt8[ndarray, "H W 3"]) -> Float[ndarray, "s s"]:
    """The frame as float32 grey levels at BACKGROUND_SIZE² (area average)."""
    return cv2.resize(_gray(image), (BACKGROUND_SIZE, BACKGROUND_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)


def far_background(background: Bool[ndarray, "H W"]) -> Bool[ndarray, "s s"]:
    """The part of a ground-truth background mask at least BACKGROUND_MARGIN of the side away from the person."""
    small = cv2.resize(background.astype(np.uint8), (BACKGROUND_SIZE, BACKGROUND_SIZE), interpolation=cv2.INTER_NEAREST)
    distance = cv2.distanceTransform(np.pad(small, 1, constant_values=1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    return distance > BACKGROUND_MARGIN * BACKGROUND_SIZE


def background_change(frames: Float[ndarray, "frames s s"], frontal: Float[ndarray, "frames s s"],
                      masks: Bool[ndarray, "frames s s"]) -> dict[str, float]:
    """background/view_change: mean |frame − frontal render of the same frame| over the far background, in grey
    levels (0 for the frontal render itself); {} without far background. A static backdrop scores ~0, a background
    smeared by the view high."""
    count = min(len(frames), len(frontal), len(masks))
    masks = masks[:count]
    if not masks.any():
        return {}
    return {"background/view_change": float(np.abs(frames[:count] - frontal[:count])[masks].mean())}


def background_flicker(frames: Float[ndarray, "frames s s"], masks: Bool[ndarray, "frames s s"]) -> dict[str, float]:
    """background/flicker: mean |frame t − frame t−1| over the far background of both frames, in grey levels; {}
    without it."""
    count = min(len(frames), len(masks))
    steady = masks[1:count] & masks[:count - 1]
    if not steady.any():
        return {}
    return {"background/flicker": float(np.abs(frames[1:count] - frames[:count - 1])[steady].mean())}
