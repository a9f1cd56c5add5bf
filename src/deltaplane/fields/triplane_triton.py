"""`fields.triplane.sample_triplane` for training on a GPU: the tri-plane lookup and its backward as Triton kernels
over channels-last planes [B, P, H, W, C].

Why: a training step of the `fast` preset looks up 12.6 M points four times (two ray chunks, coarse and fine), and
`grid_sample`'s backward took 75 of the step's 254 device milliseconds on an H200 (docs/performance.md
"Training"). Its NCHW layout puts a point's C gradient atomics H·W apart, and the plane mean first writes and then
reduces a [B, P, C, N] tensor. Here a point's C channels are contiguous, so its loads and atomics are coalesced, and
the mean over the planes is summed in registers: one [B, N, C] write forward, one read backward.

Same conventions as `sample_triplane` (`PLANE_AXES`, align_corners=False, zero padding, the sum over the given
planes divided by 3), in float32. No gradient reaches the points (training's points come from fixed cameras); the
planes' gradient is summed with atomics, so it is not bit-reproducible (neither is `grid_sample`'s). This module
imports Triton: `sample_triplane` imports it only on CUDA (`TRITON_INTERPRET=1` runs the kernels on CPU tensors for
tests).
"""

import torch
import triton
import triton.language as tl
from torch import Tensor

BLOCK_POINTS = 64
"""Points per Triton program."""


@triton.jit
def bilinear_corner(u, v, width, height, valid, CORNER: tl.constexpr):
    """Texel (row-major within the plane), bilinear weight and in-plane mask of one of a point's four corners."""
    x = ((u + 1.0) * width - 1.0) * 0.5  # texel units, align_corners=False
    y = ((v + 1.0) * height - 1.0) * 0.5
    x0, y0 = tl.floor(x), tl.floor(y)
    fx, fy = x - x0, y - y0
    if CORNER % 2 == 0:
        x_index, x_weight = x0, 1.0 - fx
    else:
        x_index, x_weight = x0 + 1.0, fx
    if CORNER // 2 == 0:
        y_index, y_weight = y0, 1.0 - fy
    else:
        y_index, y_weight = y0 + 1.0, fy
    inside = valid & (x_index >= 0) & (x_index < width) & (y_index >= 0) & (y_index < height)
    texel = y_index.to(tl.int64) * width + x_index.to(tl.int64)  # out-of-plane texels are masked: zero padding
    return texel, x_weight * y_weight, inside


@triton.jit
def plane_uv(px, py, pz, PLANE: tl.constexpr):
    """`PLANE_AXES`: plane 0 = (x, y), plane 1 = (x, z), plane 2 = (z, y)."""
    if PLANE == 0:
        return px, py
    elif PLANE == 1:
        return px, pz
    else:
        return pz, py


@triton.jit
def _lookup_kernel(planes_ptr, points_ptr, grad_ptr, out_ptr, num_points, points_per_batch, height, width, scale,
                   CHANNELS: tl.constexpr, BLOCK: tl.constexpr, NUM_SLOTS: tl.constexpr, PLANE_IDS: tl.constexpr,
                   BACKWARD: tl.constexpr):
    """Forward: out[b, n] = Σ_slots bilinear(planes[b, slot], uv(point)) / 3. Backward: scatter grad[b, n] / 3
    into out = ∂planes (zeroed by the caller) with the same weights. Slot s holds plane (PLANE_IDS >> 2s) & 3."""
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # flat point index b·N + n
    valid = rows < num_points
    channels = tl.arange(0, CHANNELS)
    px = tl.load(points_ptr + rows * 3 + 0, mask=valid, other=0.0) * scale
    py = tl.load(points_ptr + rows * 3 + 1, mask=valid, other=0.0) * scale
    pz = tl.load(points_ptr + rows * 3 + 2, mask=valid, other=0.0) * scale
    first_texel = (rows // points_per_batch).to(tl.int64) * NUM_SLOTS * height * width
    point_channels = rows.to(tl.int64)[:, None] * CHANNELS + channels[None, :]
    if BACKWARD:
        grad = tl.load(grad_ptr + point_channels, mask=valid[:, None], other=0.0) / 3.0
    else:
        total = tl.zeros((BLOCK, CHANNELS), dtype=tl.float32)
    for slot in tl.static_range(NUM_SLOTS):
        u, v = plane_uv(px, py, pz, (PLANE_IDS >> (2 * slot)) & 3)
        for corner in tl.static_range(4):
            texel, weight, inside = bilinear_corner(u, v, width, height, valid, corner)
            offsets = (first_texel + slot * height * width + texel)[:, None] * CHANNELS + channels[None, :]
            if BACKWARD:
                tl.atomic_add(out_ptr + offsets, grad * weight[:, None], mask=inside[:, None], sem="relaxed")
            else:
                total += tl.load(planes_ptr + offsets, mask=inside[:, None], other=0.0) * weight[:, None]
    if not BACKWARD:
        tl.store(out_ptr + point_channels, total / 3.0, mask=valid[:, None])


def _launch(planes_shape: tuple[int, ...], points: Tensor, plane_ids: list[int], box_warp: float, planes: Tensor,
            grad: Tensor, out: Tensor, backward: bool) -> None:
    batch, num_slots, height, width, channels = planes_shape
    if len(plane_ids) != num_slots or not set(plane_ids) <= {0, 1, 2} or len(set(plane_ids)) != num_slots:
        raise ValueError(f"{num_slots} planes given for plane ids {plane_ids}")
    if channels < 16 or channels & (channels - 1):
        raise ValueError(f"the Triton lookup needs a power-of-two channel count ≥ 16, got {channels}")
    num_points = points.shape[1]
    grid = (triton.cdiv(batch * num_points, BLOCK_POINTS),)
    _lookup_kernel[grid](planes, points, grad, out, batch * num_points, num_points, height, width, 2.0 / box_warp,
                         CHANNELS=channels, BLOCK=BLOCK_POINTS, NUM_SLOTS=num_slots,
                         PLANE_IDS=sum(plane << (2 * slot) for slot, plane in enumerate(plane_ids)),
                         BACKWARD=backward)


@torch.library.custom_op("deltaplane::triplane_lookup", mutates_args=())
def triplane_lookup(planes: Tensor, points: Tensor, box_warp: float, plane_ids: list[int]) -> Tensor:
    """`sample_triplane` of channels-last float32 planes [B, P, H, W, C] (plane `plane_ids[p]` in slot p) at float32
    points [B, N, 3]: features [B, N, C], float32."""
    planes, points = planes.contiguous(), points.contiguous()
    out = points.new_empty(points.shape[0], points.shape[1], planes.shape[-1])
    _launch(tuple(planes.shape), points, plane_ids, box_warp, planes, out, out, backward=False)
    return out


@triplane_lookup.register_fake
def _(planes: Tensor, points: Tensor, box_warp: float, plane_ids: list[int]) -> Tensor:
    return points.new_empty(points.shape[0], points.shape[1], planes.shape[-1])


@torch.library.custom_op("deltaplane::triplane_lookup_backward", mutates_args=())
def triplane_lookup_backward(grad: Tensor, points: Tensor, planes_shape: list[int], box_warp: float,
                             plane_ids: list[int]) -> Tensor:
    """The planes' gradient [B, P, H, W, C] of `triplane_lookup` for the features' gradient `grad` [B, N, C]."""
    grad, points = grad.float().contiguous(), points.contiguous()
    out = grad.new_zeros(planes_shape)
    _launch(tuple(planes_shape), points, plane_ids, box_warp, grad, grad, out, backward=True)
    return out


@triplane_lookup_backward.register_fake
def _(grad: Tensor, points: Tensor, planes_shape: list[int], box_warp: float, plane_ids: list[int]) -> Tensor:
    return grad.new_empty(planes_shape)


def _setup_context(ctx, inputs: tuple, output: Tensor) -> None:  # noqa: ANN001 -- torch.library's signature
    planes, points, ctx.box_warp, ctx.plane_ids = inputs
    ctx.planes_shape = list(planes.shape)
    ctx.save_for_backward(points)


def _backward(ctx, grad: Tensor) -> tuple:  # noqa: ANN001
    if ctx.needs_input_grad[1]:
        raise NotImplementedError("triplane_lookup gives no gradient to the points; use fields.triplane's "
                                  "grid_sample path for points that need one")
    (points,) = ctx.saved_tensors
    grad_planes = (triplane_lookup_backward(grad, points, ctx.planes_shape, ctx.box_warp, ctx.plane_ids)
                   if ctx.needs_input_grad[0] else None)
    return grad_planes, None, None, None


triplane_lookup.register_autograd(_backward, setup_context=_setup_context)
