"""LPIPS (Zhang et al. 2018, `lpips` package v0.1) in plain torch, built from user-supplied weight files.

Weights never download. `load_lpips` takes either
  * one file in the lpips package's full-model format (`torch.save(lpips.LPIPS(net=...).state_dict())`: keys
    `net.slice1.0.weight` … and `lin0.model.1.weight` …), or
  * the torchvision backbone (`alexnet-owt-7be5be79.pth` / `vgg16-397923af.pth`: keys `features.0.weight` …) plus
    the lpips linear heads (`alex.pth` / `vgg.pth` from the lpips package's `weights/v0.1/`), given as two paths or
    as a directory that holds both under those names (the CLI's `--lpips-weights DIR`).
The module's own state dict is the full-model format, so `torch.save(model.state_dict(), path)` writes a file that
`load_lpips(path)` reads back.
"""

from __future__ import annotations

import pickle
import zipfile

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Self

import torch
from jaxtyping import Float
from safetensors.torch import load_file
from torch import Tensor, nn

from deltaplane.errors import InputError, MissingDependencyError

LpipsNet = Literal["alex", "vgg"]

CHANNELS: dict[str, tuple[int, ...]] = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
"""Channels of the five tapped ReLU outputs (one linear head each)."""
SLICE_BOUNDS: dict[str, tuple[int, ...]] = {"alex": (0, 2, 5, 8, 10, 12), "vgg": (0, 4, 9, 16, 23, 30)}
"""torchvision `features` indices where lpips cuts the backbone: slice k holds layers [bounds[k], bounds[k+1])."""
BACKBONE_GLOB: dict[str, str] = {"alex": "alexnet-*.pth", "vgg": "vgg16-*.pth"}
"""torchvision hub file names of the ImageNet backbones (alexnet-owt-7be5be79.pth, vgg16-397923af.pth)."""
_VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


MAX_UNPACKED_BYTES = 2 << 30
"""Largest a weight file may unpack to (the biggest optional model, ArcFace IResNet-100, is ~250 MB)."""
MAX_PACKING_RATIO = 20
"""torch.save writes tensors uncompressed; a file that unpacks to this many times its size is a decompression bomb."""


def _check_unpacked_size(path: Path, what: str) -> None:
    """Refuse a zip-format torch file (torch.save's format) that would unpack to absurd sizes, before loading it."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"cannot read {what} weights from {path} ({exc})") from exc
    if unpacked > MAX_UNPACKED_BYTES or unpacked > MAX_PACKING_RATIO * max(path.stat().st_size, 1 << 20):
        raise InputError(f"refusing {what} weights from {path}: {path.stat().st_size / 1e6:.1f} MB on disk would "
                         f"unpack to {unpacked / 1e6:.0f} MB; weight files are stored uncompressed")


def read_weight_file(path: Path, what: str) -> dict[str, Any]:
    """Read the top-level dict of a .safetensors file or a torch file (weights_only: no pickled code runs).

    Raises MissingDependencyError when the file is absent and InputError when it cannot be read safely.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDependencyError(f"{what} weights not found at {path}")
    _check_unpacked_size(path, what)
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" not in str(exc).lower():  # a damaged file, not a refused object
            raise InputError(f"cannot read {what} weights from {path} (corrupt pickle); expected a state dict saved "
                             "with torch.save or safetensors") from exc
        # torch's own text suggests weights_only=False: never pass that advice on
        raise InputError(f"refusing {what} weights from {path}: the file holds Python objects other than tensors, "
                         "which could run code when loaded; give a plain state dict (torch.save of tensors) or a "
                         ".safetensors file") from exc
    except Exception as exc:  # corrupt pickles raise almost anything (IndexError, RuntimeError, EOFError…)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise InputError(f"cannot read {what} weights from {path} ({type(exc).__name__}: {first_line}); expected a "
                         "state dict saved with torch.save or safetensors") from exc
    if not isinstance(loaded, dict):
        raise InputError(f"{what} weights in {path} are a {type(loaded).__name__}, expected a dict of tensors")
    odd = next((key for key in loaded if not isinstance(key, str)), None)
    if odd is not None:
        raise InputError(f"{what} weights in {path} have a {type(odd).__name__} key ({odd!r}); a state dict is "
                         "keyed by parameter names")
    return loaded


def load_state_checked(module: nn.Module, state: dict[str, Any], source: str,
                       optional: tuple[str, ...] = ("num_batches_tracked",),
                       hints: dict[str, str] | None = None) -> None:
    """Copy `state` into `module`, raising InputError naming the first missing or mis-shaped key.

    Keys containing one of `optional` may be absent (they keep the module's value); extra keys are ignored.
    `hints` maps a key prefix to the file that should have provided it, appended to the error.
    """
    def fail(name: str, problem: str) -> InputError:
        hint = next((text for prefix, text in (hints or {}).items() if name.startswith(prefix)), None)
        return InputError(f"{source}: {problem}" + (f" (needs {hint})" if hint else ""))

    expected = module.state_dict()
    for name, reference in expected.items():
        if name not in state:
            if any(part in name for part in optional):
                continue
            raise fail(name, f"missing key {name!r}")
        if not isinstance(state[name], Tensor) or state[name].shape != reference.shape:
            found = tuple(state[name].shape) if isinstance(state[name], Tensor) else type(state[name]).__name__
            raise fail(name, f"key {name!r} has shape {found}, expected {tuple(reference.shape)}")
    module.load_state_dict({name: state[name] for name in expected if name in state}, strict=False)


def _backbone_layers(net: LpipsNet) -> list[nn.Module]:
    """torchvision's `features` list (AlexNet 'owt' / VGG16), so that list index = state-dict index."""
    if net == "alex":
        return [nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
                nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
                nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2)]
    layers: list[nn.Module] = []
    in_channels = 3
    for item in _VGG16_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_channels, int(item), 3, padding=1), nn.ReLU()]
            in_channels = int(item)
    return layers


class _ScalingLayer(nn.Module):
    """Maps [-1, 1] images to ImageNet-normalised ones: (x − shift) / scale."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])

    def forward(self, images: Tensor) -> Tensor:
        return (images - self.shift) / self.scale


class _Backbone(nn.Module):
    """The five lpips slices of the torchvision feature stack; layers keep their torchvision index as name."""

    def __init__(self, net: LpipsNet) -> None:
        super().__init__()
        layers = _backbone_layers(net)
        bounds = SLICE_BOUNDS[net]
        for k in range(5):
            block = nn.Sequential()
            for index in range(bounds[k], bounds[k + 1]):
                block.add_module(str(index), layers[index])
            self.add_module(f"slice{k + 1}", block)

    def forward(self, images: Tensor) -> list[Tensor]:
        features = []
        for k in range(5):
            images = getattr(self, f"slice{k + 1}")(images)
            features.append(images)
        return features


class _LinearHead(nn.Module):
    """A 1×1 conv without bias; `model.0` is the lpips Dropout slot, inert at eval, kept so the conv is `model.1`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))


def _unit_normalize(features: Tensor, eps: float = 1e-10) -> Tensor:
    return features / (features.square().sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """Frozen LPIPS v0.1 distance; differentiable with respect to its inputs. Always in eval mode."""

    def __init__(self, net: LpipsNet = "alex") -> None:
        super().__init__()
        if net not in CHANNELS:
            raise InputError(f"unknown LPIPS backbone {net!r}; expected one of {sorted(CHANNELS)}")
        self.net_name: LpipsNet = net
        self.scaling_layer = _ScalingLayer()
        self.net = _Backbone(net)
        for k, channels in enumerate(CHANNELS[net]):
            self.add_module(f"lin{k}", _LinearHead(channels))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Self:
        """A frozen metric: stays in eval mode whatever a parent module asks."""
        return super().train(False)

    def forward(self, prediction: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]) -> Float[Tensor, " B"]:
        """Per-image distance for RGB images in [-1, 1] (0 for identical images)."""
        batch = prediction.shape[0]
        images = self.scaling_layer(torch.cat([prediction, target.to(prediction.dtype)], dim=0))  # [2B, 3, H, W]
        distance = prediction.new_zeros(batch)
        for k, features in enumerate(self.net(images)):
            difference = (_unit_normalize(features[:batch]) - _unit_normalize(features[batch:])).square()
            head = getattr(self, f"lin{k}").model
            distance = distance + head(difference).mean(dim=(1, 2, 3))  # [B]
        return distance


def _from_torchvision(state: dict[str, Tensor], net: LpipsNet) -> dict[str, Tensor]:
    """Rename torchvision `features.{i}.*` keys to the lpips `net.slice{k}.{i}.*` layout; other keys pass through."""
    bounds = SLICE_BOUNDS[net]
    renamed: dict[str, Tensor] = {}
    for name, tensor in state.items():
        parts = name.split(".")
        if parts[0] == "features" and len(parts) == 3 and parts[1].isdigit():
            index = int(parts[1])
            k = next((k for k in range(5) if bounds[k] <= index < bounds[k + 1]), None)
            if k is not None:
                renamed[f"net.slice{k + 1}.{index}.{parts[2]}"] = tensor
                continue
        renamed[name] = tensor
    return renamed


def _files_in_directory(directory: Path, net: LpipsNet) -> list[Path]:
    heads = directory / f"{net}.pth"
    backbones = sorted(directory.glob(BACKBONE_GLOB[net]))
    if not heads.is_file():
        raise MissingDependencyError(f"no LPIPS linear heads {heads.name} (lpips package weights/v0.1/) in {directory}")
    if not backbones:
        raise MissingDependencyError(f"no torchvision backbone {BACKBONE_GLOB[net]} (e.g. alexnet-owt-7be5be79.pth "
                                     f"or vgg16-397923af.pth) in {directory}")
    return [backbones[-1], heads]


def load_lpips(weights: str | Path | Sequence[str | Path], net: LpipsNet = "alex") -> LPIPS:
    """Build a frozen LPIPS from a full-model file, a (backbone, heads) pair of files, or a directory holding both.

    The files of a pair may come in either order: torchvision `features.*` keys are recognised and renamed.
    """
    sources = [Path(weights)] if isinstance(weights, (str, Path)) else [Path(path) for path in weights]
    if len(sources) == 1 and sources[0].is_dir():
        sources = _files_in_directory(sources[0], net)
    if not sources or len(sources) > 2:
        raise InputError(f"LPIPS weights: expected one file, two files or a directory, got {len(sources)} paths")
    state: dict[str, Tensor] = {}
    for path in sources:
        state.update(_from_torchvision(read_weight_file(path, f"LPIPS ({net})"), net))
    model = LPIPS(net)
    names = " + ".join(str(path) for path in sources)
    hints = {"lin": f"the lpips linear heads {net}.pth", "net.": f"the torchvision backbone {BACKBONE_GLOB[net]}"}
    load_state_checked(model, state, f"LPIPS ({net}) weights {names}", optional=("scaling_layer.",), hints=hints)
    return model
