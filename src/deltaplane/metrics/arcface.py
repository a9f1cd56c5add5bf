"""ArcFace identity embeddings (insightface `arcface_torch` IResNet backbones) from a user-supplied `backbone.pth`.

The state dict has arcface_torch's key layout (`conv1.weight`, `bn1.*`, `prelu.weight`, `layer1.0.bn1.*`,
`layer1.0.conv1.weight`, …, `layer1.0.downsample.0/1.*`, `bn2.*`, `fc.*`, `features.*`); the depth (18, 34, 50 or
100) is read from the number of blocks per stage. Faces are aligned as insightface's `norm_crop`: a least-squares
similarity (Umeyama, skimage's `SimilarityTransform`) maps 5 points (eye centres, nose tip, mouth corners) onto
`ARCFACE_TEMPLATE` in a 112² crop. Other backbones (CurricularFace's IR-101, …) have different layouts and are not
supported.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Self

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, UInt8
from numpy import ndarray
from skimage.transform import estimate_transform
from torch import Tensor, nn

from deltaplane.errors import InputError
from deltaplane.metrics.lpips import load_state_checked, read_weight_file

CROP_SIZE = 112
EMBEDDING_DIM = 512
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                             [70.7299, 92.2041]], np.float32)
"""insightface's `arcface_dst`: image-left eye, image-right eye, nose tip, image-left and image-right mouth corner in
the 112² crop (OpenCV's integer pixel centres)."""
STAGE_BLOCKS: dict[tuple[int, ...], int] = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 34, (3, 4, 14, 3): 50,
                                                      (3, 13, 30, 3): 100}
"""Blocks per stage → depth of arcface_torch's iresnet18/34/50/100."""
_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.conv1\.weight$")


class IBasicBlock(nn.Module):
    """arcface_torch's pre-activation block: BN → conv3×3 → BN → PReLU → conv3×3 (stride) → BN, plus the shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=1e-5)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-5)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels, eps=1e-5)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(channels, eps=1e-5))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """arcface_torch's IResNet: [B, 3, 112, 112] RGB in [−1, 1] → [B, 512] embedding (not normalised)."""

    def __init__(self, depth: int = 50) -> None:
        super().__init__()
        blocks = next((layout for layout, known in STAGE_BLOCKS.items() if known == depth), None)
        if blocks is None:
            raise InputError(f"unknown IResNet depth {depth}; expected one of {sorted(STAGE_BLOCKS.values())}")
        self.depth = depth
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        in_channels = 64
        for stage, (channels, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
            stage_blocks = [IBasicBlock(in_channels, channels, stride=2)]  # every stage halves: 112 → 7
            stage_blocks += [IBasicBlock(channels, channels, stride=1) for _ in range(count - 1)]
            self.add_module(f"layer{stage}", nn.Sequential(*stage_blocks))
            in_channels = channels
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.fc = nn.Linear(512 * 7 * 7, EMBEDDING_DIM)
        self.features = nn.BatchNorm1d(EMBEDDING_DIM, eps=1e-5)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Self:
        """A frozen metric network: stays in eval mode (BatchNorm running statistics, no dropout)."""
        return super().train(False)

    def forward(self, faces: Float[Tensor, "B 3 112 112"]) -> Float[Tensor, "B 512"]:
        x = self.prelu(self.bn1(self.conv1(faces)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # [B, 512, 7, 7]
        return self.features(self.fc(self.bn2(x).flatten(1)))


def _stage_blocks(state: dict[str, Tensor]) -> tuple[int, ...]:
    counts = [0, 0, 0, 0]
    for name in state:
        if match := _BLOCK_KEY.match(name):
            stage, index = int(match[1]) - 1, int(match[2])
            counts[stage] = max(counts[stage], index + 1)
    return tuple(counts)


def load_arcface(path: str | Path) -> IResNet:
    """Load an arcface_torch `backbone.pth` (iresnet18/34/50/100; the depth is read from its keys)."""
    state = read_weight_file(Path(path), "ArcFace")
    state = {name.removeprefix("module."): value for name, value in state.items()}
    blocks = _stage_blocks(state)
    if blocks not in STAGE_BLOCKS:
        raise InputError(f"ArcFace weights {path}: {blocks} blocks per stage is not an arcface_torch iresnet18/34/50/"
                         f"100 backbone.pth ({', '.join(f'{layout}' for layout in STAGE_BLOCKS)})")
    model = IResNet(STAGE_BLOCKS[blocks])
    load_state_checked(model, state, f"ArcFace weights {path}")
    return model


def five_points(landmarks68: Float[ndarray, "68 2"]) -> Float[ndarray, "5 2"]:
    """insightface's 5 points from the 68-point layout: eye centres (36–41, 42–47), nose tip 30, mouth corners 48
    and 54, in `ARCFACE_TEMPLATE`'s order."""
    return np.stack([landmarks68[36:42].mean(0), landmarks68[42:48].mean(0), landmarks68[30], landmarks68[48],
                     landmarks68[54]]).astype(np.float32)


def alignment_matrix(points: Float[ndarray, "5 2"]) -> Float[ndarray, "2 3"]:
    """insightface's `estimate_norm`: the least-squares similarity taking `points` onto `ARCFACE_TEMPLATE`."""
    return estimate_transform("similarity", points.astype(np.float64), ARCFACE_TEMPLATE.astype(np.float64)).params[:2]


def align_face(rgb: UInt8[ndarray, "H W 3"], landmarks68: Float[ndarray, "68 2"]) -> UInt8[ndarray, "112 112 3"]:
    """The 112² ArcFace crop of the face with these landmarks (insightface's `norm_crop`, black outside)."""
    points = five_points(landmarks68) - 0.5  # pixel centres at +0.5 → OpenCV's integer centres
    return cv2.warpAffine(rgb, alignment_matrix(points), (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                          borderValue=(0, 0, 0))


@torch.no_grad()
def arcface_embeddings(model: IResNet, crops: UInt8[ndarray, "B 112 112 3"]) -> Float[ndarray, "B 512"]:
    """Unit-length embeddings of aligned RGB crops, normalised to [−1, 1] as arcface_torch's inference does."""
    device = next(model.parameters()).device
    faces = torch.from_numpy(np.ascontiguousarray(crops)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return F.normalize(model(faces).float(), dim=1).cpu().numpy()
