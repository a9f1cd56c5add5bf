"""Per-token cross-attention maps of the deltaplane predictor, for visualisation: where on each plane the audio, eye,
null, angle and landmark tokens act (Talk3D Fig. 6).

`attention_maps` returns the raw maps; `attention_sheet` draws one frame's maps as a labelled grid (rows: planes
(x,y), (x,z), (z,y); columns: tokens), averaged over the transformer layers; `export_attention` writes both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, UInt8
from numpy import ndarray
from torch import Tensor

from deltaplane.fields.conditions import TOKEN_NAMES
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.structs import Conditions

PLANE_NAMES = ("xy", "xz", "zy")
TILE = 128
"""Side of one map in the sheet, pixels."""


@torch.no_grad()
def attention_maps(model: TriplaneTalker, conditions: Conditions, batch_size: int = 16
                   ) -> Float[Tensor, "frames layers 3 grid grid tokens"]:
    """Cross-attention weights (heads averaged, summing to 1 over the tokens) for every frame of `conditions`."""
    device = model.identity_planes.device
    encoded = model.encode_identity()
    grid = model.config.deltaplane.grid_resolution
    maps = []
    for start in range(0, conditions.eye.shape[0], batch_size):
        part = Conditions(*(getattr(conditions, name)[start:start + batch_size].to(device)
                            for name in ("audio", "eye", "angles", "landmarks")))
        _, attention = model.predictor.decode(encoded, model.heard(model.tokens(part)), return_attention=True)
        maps.append(attention.unflatten(3, (grid, grid)).cpu())  # [B, L, 3, g, g, T]; token index = row·g + col
    return torch.cat(maps)


def attention_sheet(maps: Float[Tensor, "layers 3 grid grid tokens"]) -> UInt8[ndarray, "height width 3"]:
    """One frame's maps, layer-averaged, as a 3 × tokens grid of colour-mapped tiles with a shared scale, labelled."""
    import cv2

    mean = maps.float().mean(0)  # [3, g, g, T]
    scale = float(mean.max().clamp_min(1e-6))
    header = 24
    sheet = np.full((header + 3 * TILE, 48 + mean.shape[-1] * TILE, 3), 255, np.uint8)
    for token, name in enumerate(TOKEN_NAMES[:mean.shape[-1]]):
        cv2.putText(sheet, name, (48 + token * TILE + 4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    for plane, name in enumerate(PLANE_NAMES):
        top = header + plane * TILE
        cv2.putText(sheet, name, (6, top + TILE // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        for token in range(mean.shape[-1]):
            tile = (mean[plane, :, :, token].numpy() / scale * 255).round().astype(np.uint8)
            tile = cv2.resize(tile, (TILE, TILE), interpolation=cv2.INTER_NEAREST)
            coloured = cv2.applyColorMap(tile, cv2.COLORMAP_VIRIDIS)[..., ::-1]  # BGR → RGB
            sheet[top:top + TILE, 48 + token * TILE:48 + (token + 1) * TILE] = coloured
    return sheet


def export_attention(model: TriplaneTalker, conditions: Conditions, frames: list[int], output_dir: Path
                     ) -> list[Path]:
    """Write `attention.npz` (maps [frames, layers, 3, grid, grid, tokens], frame numbers, token names) and one
    `attention_FRAME.png` sheet per frame into `output_dir`; returns the sheets' paths."""
    import cv2

    from deltaplane.atomic import atomic_path, save_npz

    selected = torch.as_tensor(frames)
    chosen = Conditions(*(getattr(conditions, name)[selected] for name in ("audio", "eye", "angles", "landmarks")))
    maps = attention_maps(model, chosen)
    output_dir.mkdir(parents=True, exist_ok=True)
    save_npz(output_dir / "attention.npz", maps=maps.numpy(), frames=selected.numpy(),
             tokens=np.array(TOKEN_NAMES), planes=np.array(PLANE_NAMES))
    paths = []
    for frame, frame_maps in zip(frames, maps):
        path = output_dir / f"attention_{frame:06d}.png"
        with atomic_path(path) as tmp:
            cv2.imwrite(str(tmp), attention_sheet(frame_maps)[..., ::-1])
        paths.append(path)
    return paths
