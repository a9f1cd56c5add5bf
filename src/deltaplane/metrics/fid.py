"""Fréchet Inception distance, clean-fid compatible ("clean" mode), from a user-supplied Inception file.

The network is pytorch-fid's FID Inception-v3 (TensorFlow's 2015-12-05 graph ported to torch: torchvision's
Inception3 with patched blocks), built here in plain torch. Its state dict has the key layout of pytorch-fid's
`pt_inception-2015-12-05-6726825d.pth` (`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.running_mean`, …); the
file's 1008-way `fc.*` classifier is not needed for the 2048-D pool features and is ignored.

Preprocessing follows clean-fid: each uint8 RGB frame is resized to 299² with PIL's antialiased bicubic filter on
float32 channels (no quantisation afterwards), and the network maps 0–255 to (x − 128) / 128 inside, as clean-fid's
`InceptionV3W` does (pytorch-fid's x / 127.5 − 1 differs from it by 0.4 %).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, UInt8
from numpy import ndarray
from PIL import Image
from scipy import linalg
from torch import Tensor, nn

from deltaplane.errors import InputError
from deltaplane.metrics.lpips import load_state_checked, read_weight_file

INCEPTION_SIZE = 299
"""Input side of the network; every frame is resized to 299² first."""
FEATURE_DIM = 2048
"""Channels of the final average pool (pytorch-fid's block 3): the features FID compares."""
SQRTM_EPS = 1e-6
"""Added to both covariance diagonals when the product's square root is not finite (as pytorch-fid / clean-fid)."""
MAX_IMAGINARY = 1e-3
"""Largest imaginary part on the diagonal of sqrtm(Σ1·Σ2) still treated as numerical noise."""


class BasicConv2d(nn.Module):
    """torchvision's conv (no bias) → BatchNorm (eps 0.001, TensorFlow's) → ReLU; keys `conv.*`, `bn.*`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_average_pool(x: Tensor) -> Tensor:
    """TensorFlow's 3×3 average pool, which leaves the zero padding out of the average (pytorch-fid's patch)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """Mixed_5b/5c/5d: 1×1, 5×5, double 3×3 and pooled branches."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, self.branch_pool(_tf_average_pool(x))], 1)


class InceptionB(nn.Module):
    """Mixed_6a: the 35² → 17² reduction (torchvision's block, unpatched)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), branch3x3dbl, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    """Mixed_6b…6e: factorised 7×7 branches (1×7 then 7×1)."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        mid = channels_7x7  # width inside the factorised 7×7 branches
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, mid, 1)
        self.branch7x7_2 = BasicConv2d(mid, mid, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(mid, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, mid, 1)
        self.branch7x7dbl_2 = BasicConv2d(mid, mid, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(mid, mid, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(mid, mid, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(mid, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for index in range(1, 6):
            branch7x7dbl = getattr(self, f"branch7x7dbl_{index}")(branch7x7dbl)
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, self.branch_pool(_tf_average_pool(x))], 1)


class InceptionD(nn.Module):
    """Mixed_7a: the 17² → 8² reduction (torchvision's block, unpatched)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([branch3x3, branch7x7x3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """Mixed_7b (pytorch-fid's FIDInceptionE_1: TensorFlow average pool) and Mixed_7c (FIDInceptionE_2: the
    FID graph max-pools there instead)."""

    def __init__(self, in_channels: int, pool: Literal["average", "max"]) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3 = self.branch3x3_1(x)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _tf_average_pool(x) if self.pool == "average" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3),
                          self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl),
                          self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's FID Inception-v3 up to the final average pool: [B, 3, 299, 299] in 0–255 → [B, 2048].

    Attribute names are torchvision's, so the state dict matches `pt_inception-2015-12-05-6726825d.pth`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool="average")
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Self:
        """A frozen metric network: stays in eval mode (BatchNorm running statistics)."""
        return super().train(False)

    def forward(self, images: Float[Tensor, "B 3 299 299"]) -> Float[Tensor, "B 2048"]:
        """Pool features of RGB images in 0–255, already resized to 299² (`resize_for_inception`)."""
        x = (images - 128.0) / 128.0  # clean-fid's normalisation of the TensorFlow graph's input
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # [B, 64, 73, 73]
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)  # [B, 192, 35, 35]
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                     "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)  # [B, 2048, 8, 8] after Mixed_7c
        return x.mean(dim=(2, 3))


def load_inception(path: str | Path) -> FIDInceptionV3:
    """Load pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (or the same state dict as safetensors)."""
    model = FIDInceptionV3()
    load_state_checked(model, read_weight_file(Path(path), "FID Inception"), f"FID Inception weights {path}")
    return model


def resize_for_inception(rgb: UInt8[ndarray, "H W 3"]) -> Float[ndarray, "299 299 3"]:
    """clean-fid's "clean" resize: PIL bicubic (antialiased when shrinking) per float32 channel, clipped to
    0–255 and not quantised."""
    channels = [np.asarray(Image.fromarray(rgb[..., channel].astype(np.float32)).resize(
        (INCEPTION_SIZE, INCEPTION_SIZE), resample=Image.Resampling.BICUBIC)) for channel in range(3)]
    return np.clip(np.stack(channels, axis=2), 0.0, 255.0)


@torch.no_grad()
def inception_features(model: FIDInceptionV3, frames: Sequence[UInt8[ndarray, "H W 3"]]) -> Float[ndarray, "B 2048"]:
    """2048-D pool features of uint8 RGB frames (any sizes; resized as clean-fid does), float32 on the CPU."""
    device = next(model.parameters()).device
    resized = np.stack([resize_for_inception(frame) for frame in frames])  # [B, 299, 299, 3]
    images = torch.from_numpy(resized).to(device).permute(0, 3, 1, 2)
    return model(images).float().cpu().numpy()


def frechet_distance(mean1: Float[ndarray, " D"], covariance1: Float[ndarray, "D D"], mean2: Float[ndarray, " D"],
                     covariance2: Float[ndarray, "D D"], eps: float = SQRTM_EPS) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2·sqrtm(Σ1·Σ2)), as pytorch-fid / clean-fid compute it: `eps` on both diagonals
    when the square root is not finite, imaginary noise below `MAX_IMAGINARY` dropped. ~13 s at D = 2048 on a
    2-core CPU; `fid_from_features` avoids it when there are fewer samples than dimensions."""
    difference = np.asarray(mean1, np.float64) - np.asarray(mean2, np.float64)
    covariance1, covariance2 = np.atleast_2d(covariance1), np.atleast_2d(covariance2)
    root = linalg.sqrtm(covariance1 @ covariance2)
    if not np.isfinite(root).all():  # a singular product
        offset = np.eye(covariance1.shape[0]) * eps
        root = linalg.sqrtm((covariance1 + offset) @ (covariance2 + offset))
    if np.iscomplexobj(root):
        imaginary = np.abs(np.diagonal(root).imag).max()
        if imaginary > MAX_IMAGINARY:
            raise InputError(f"the covariance product has no real square root (imaginary part {imaginary:.3g})")
        root = root.real
    return float(difference @ difference + np.trace(covariance1) + np.trace(covariance2) - 2.0 * np.trace(root))


def feature_statistics(features: Float[ndarray, "N D"]) -> tuple[Float[ndarray, " D"], Float[ndarray, "D D"]]:
    """Mean and unbiased covariance (numpy's `cov`, as clean-fid) in float64."""
    features = np.asarray(features, np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def fid_from_features(features1: Float[ndarray, "N1 D"], features2: Float[ndarray, "N2 D"]) -> float:
    """FID of two feature sets (at least 2 samples each).

    With fewer samples than dimensions both covariances have low rank, and tr sqrtm(Σ1·Σ2) is exactly the sum of
    the singular values of X1·X2ᵀ / √((N1 − 1)(N2 − 1)) (X: centred features; the nonzero eigenvalues of
    X1ᵀX1·X2ᵀX2 are those of X1X2ᵀ·X2X1ᵀ), which takes milliseconds instead of a 2048² `sqrtm`. Otherwise this is
    `frechet_distance` of the two `feature_statistics`.
    """
    count1, count2 = features1.shape[0], features2.shape[0]
    if min(count1, count2) < 2:
        raise InputError(f"FID needs at least 2 samples per set, got {count1} and {count2}")
    if min(count1, count2) >= features1.shape[1]:
        return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))
    centred1 = np.asarray(features1, np.float64) - features1.mean(0, dtype=np.float64)
    centred2 = np.asarray(features2, np.float64) - features2.mean(0, dtype=np.float64)
    difference = features1.mean(0, dtype=np.float64) - features2.mean(0, dtype=np.float64)
    trace1 = np.square(centred1).sum() / (count1 - 1)
    trace2 = np.square(centred2).sum() / (count2 - 1)
    root_trace = np.linalg.svd(centred1 @ centred2.T, compute_uv=False).sum() / np.sqrt((count1 - 1) * (count2 - 1))
    return float(difference @ difference + trace1 + trace2 - 2.0 * root_trace)
