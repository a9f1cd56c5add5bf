"""The tri-plane field of the fast path as one Triton kernel: bilinear lookup in the 3 channels-last planes, plane
mean (with a second channel set confined to a box on some planes, `fields.triplane.Confinement`, for confined
mouth planes), and EG3D's OSG decoder MLP (Linear → Softplus → Linear; raw density, features sigmoid·1.002 −
0.001).

Reference: `fastpath.triplane_field_reference` (the channels-last lookup + the decoder maths of
`fields.triplane.OSGDecoder`). Nothing between the lookup and the outputs touches device memory: per point the kernel
reads 3 planes × 4 corners × C channels and writes C + 1 floats. Sampled features and hidden activations stay
float32 and the two matrix products take float32 operands (TF32 tensor cores on a GPU), so it is at least as
accurate as the bf16 autocast path it replaces.

`triplane_field` is a torch custom op (`deltaplane::triplane_field`): opaque to torch.compile, capturable in a CUDA
graph. Its backward recomputes the reference maths (the fast path is inference-only; the backward exists so that
values and gradients can be checked against the reference). This module imports Triton; import it only when it is
used (CPU CI has no Triton; `TRITON_INTERPRET=1` runs the kernel on CPU tensors for tests).
"""

import torch
import triton
import triton.language as tl
from torch import Tensor

from deltaplane.fastpath import triplane_field_reference
from deltaplane.fields.triplane_triton import bilinear_corner, plane_uv

LAUNCH = (64, 4, 3)
"""(points per Triton program, warps per program, software-pipeline stages) of the kernel's launch;
`scripts/gpu_render_profile.py --parts field_launch` times the alternatives."""


@triton.jit
def _ramp(coordinate, low, high, edge):
    """`fields.triplane._ramp`: 1 inside [low, high], falling linearly to 0 over `edge` outside it."""
    return (tl.minimum(tl.maximum((coordinate - low + edge) / edge, 0.0), 1.0)
            * tl.minimum(tl.maximum((high + edge - coordinate) / edge, 0.0), 1.0))


@triton.jit
def _triplane_field_kernel(planes_ptr, points_ptr, weight1_ptr, bias1_ptr, weight2_ptr, bias2_ptr, added_ptr,
                           features_ptr, density_ptr, num_points, points_per_batch, height, width, scale,
                           box_x0, box_x1, box_y0, box_y1, box_z0, box_z1, box_edge,
                           CHANNELS: tl.constexpr, HIDDEN: tl.constexpr, OUT: tl.constexpr, BLOCK: tl.constexpr,
                           CONFINED_PLANES: tl.constexpr, ADDED: tl.constexpr):
    rows = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # flat point index b·N + n
    valid = rows < num_points
    channels = tl.arange(0, CHANNELS)
    # CONFINED_PLANES: bit k set = plane k's second set of C channels per texel counts (0: one set, not confined)
    stride = CHANNELS * 2 if CONFINED_PLANES else CHANNELS
    wx = tl.load(points_ptr + rows * 3 + 0, mask=valid, other=0.0)  # world units
    wy = tl.load(points_ptr + rows * 3 + 1, mask=valid, other=0.0)
    wz = tl.load(points_ptr + rows * 3 + 2, mask=valid, other=0.0)
    px, py, pz = wx * scale, wy * scale, wz * scale
    first_texel = (rows // points_per_batch).to(tl.int64) * 3 * height * width
    total = tl.zeros((BLOCK, CHANNELS), dtype=tl.float32)
    confined_total = tl.zeros((BLOCK, CHANNELS), dtype=tl.float32)
    # `fields.triplane.confine_to_box`: the second set weighted by the point's 3D box weight; the many points outside
    # the box (weight 0) do not read it
    box_weight = (_ramp(wx, box_x0, box_x1, box_edge) * _ramp(wy, box_y0, box_y1, box_edge)
                  * _ramp(wz, box_z0, box_z1, box_edge))
    in_box = box_weight > 0
    for plane in tl.static_range(3):
        u, v = plane_uv(px, py, pz, plane)
        plane_texel = first_texel + plane * height * width
        for corner in tl.static_range(4):
            texel, weight, inside = bilinear_corner(u, v, width, height, valid, corner)
            texel += plane_texel
            values = tl.load(planes_ptr + texel[:, None] * stride + channels[None, :], mask=inside[:, None],
                             other=0.0)  # [BLOCK, C]: C contiguous values per corner
            total += values.to(tl.float32) * weight[:, None]
            if (CONFINED_PLANES >> plane) & 1:  # the others' second set is never read
                values = tl.load(planes_ptr + texel[:, None] * stride + CHANNELS + channels[None, :],
                                 mask=(inside & in_box)[:, None], other=0.0)
                confined_total += values.to(tl.float32) * weight[:, None]
    if CONFINED_PLANES:
        total += confined_total * box_weight[:, None]
    features = total / 3.0
    if ADDED:  # float32 [num_points, C]: the torso's features, looked up at other points
        features += tl.load(added_ptr + rows.to(tl.int64)[:, None] * CHANNELS + channels[None, :],
                            mask=valid[:, None], other=0.0)
    hidden_index, out_index = tl.arange(0, HIDDEN), tl.arange(0, OUT)
    weight1 = tl.load(weight1_ptr + hidden_index[None, :] * CHANNELS + channels[:, None])  # [C, HIDDEN] = W1ᵀ
    hidden = tl.dot(features, weight1) + tl.load(bias1_ptr + hidden_index)[None, :]
    hidden = tl.maximum(hidden, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(hidden)))  # softplus
    weight2 = tl.load(weight2_ptr + (1 + out_index[None, :]) * HIDDEN + hidden_index[:, None])  # [HIDDEN, OUT]
    decoded = tl.dot(hidden, weight2) + tl.load(bias2_ptr + 1 + out_index)[None, :]
    decoded = tl.sigmoid(decoded) * (1.0 + 2 * 0.001) - 0.001
    tl.store(features_ptr + rows.to(tl.int64)[:, None] * OUT + out_index[None, :], decoded, mask=valid[:, None])
    density = tl.sum(hidden * tl.load(weight2_ptr + hidden_index)[None, :], axis=1) + tl.load(bias2_ptr)
    tl.store(density_ptr + rows, density, mask=valid)


def _is_power_of_two_at_least_16(size: int) -> bool:
    return size >= 16 and size & (size - 1) == 0


@torch.library.custom_op("deltaplane::triplane_field", mutates_args=())
def triplane_field(planes: Tensor, points: Tensor, weight1: Tensor, bias1: Tensor, weight2: Tensor, bias2: Tensor,
                   box_warp: float, confined: list[float], added: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """`triplane_field_reference` in one Triton kernel: planes [B, 3, H, W, C] (any float dtype; 2C channels when
    `confined` = `fields.triplane.Confinement.arguments` is given, else empty), points [B, N, 3], the decoder's
    weights, `added` [B, N, C] or None; returns float32 (features [B, N, out], density [B, N, 1])."""
    return launch_field(planes, points, weight1, bias1, weight2, bias2, box_warp, confined, added)


def launch_field(planes: Tensor, points: Tensor, weight1: Tensor, bias1: Tensor, weight2: Tensor, bias2: Tensor,
                 box_warp: float, confined: list[float], added: Tensor | None = None,
                 launch: tuple[int, int, int] = LAUNCH) -> tuple[Tensor, Tensor]:
    """`triplane_field` at a given `LAUNCH`-like configuration (`scripts/gpu_render_profile.py` compares them)."""
    batch, num_planes, height, width, channels = planes.shape
    if confined:
        if len(confined) < 8:
            raise ValueError(f"confined must be Confinement.arguments (box, edge, planes), got {confined}")
        channels //= 2
    hidden, out = weight1.shape[0], weight2.shape[0] - 1
    if num_planes != 3 or not all(_is_power_of_two_at_least_16(size) for size in (channels, hidden, out)):
        raise ValueError(f"the Triton field needs 3 planes and power-of-two widths ≥ 16, got planes "
                         f"{tuple(planes.shape)}, hidden {hidden}, out {out}")
    block, num_warps, num_stages = launch
    num_points = points.shape[1]
    features = torch.empty(batch, num_points, out, dtype=torch.float32, device=points.device)
    density = torch.empty(batch, num_points, 1, dtype=torch.float32, device=points.device)
    grid = (triton.cdiv(batch * num_points, block),)
    points = points.float().contiguous()
    added = points if added is None else added.float().contiguous()  # without `added` the kernel never reads it
    _triplane_field_kernel[grid](planes.contiguous(), points, weight1.float().contiguous(),
                                 bias1.float().contiguous(), weight2.float().contiguous(), bias2.float().contiguous(),
                                 added, features, density, batch * num_points, num_points, height, width,
                                 2.0 / box_warp,
                                 *(confined[:7] if confined else [0.0] * 6 + [1.0]), CHANNELS=channels,
                                 HIDDEN=hidden, OUT=out, BLOCK=block,
                                 CONFINED_PLANES=sum(1 << int(plane) for plane in confined[7:]),
                                 ADDED=added is not points, num_warps=num_warps, num_stages=num_stages)
    return features, density


@triplane_field.register_fake
def _(planes: Tensor, points: Tensor, weight1: Tensor, bias1: Tensor, weight2: Tensor, bias2: Tensor,
      box_warp: float, confined: list[float], added: Tensor | None = None) -> tuple[Tensor, Tensor]:
    batch, num_points = points.shape[:2]
    return (points.new_empty(batch, num_points, weight2.shape[0] - 1, dtype=torch.float32),
            points.new_empty(batch, num_points, 1, dtype=torch.float32))


def _setup_context(ctx, inputs: tuple, output: tuple) -> None:  # noqa: ANN001 -- torch.library's signature
    ctx.save_for_backward(*inputs[:6], inputs[8] if len(inputs) > 8 else None)  # `added` may be left out
    ctx.box_warp, ctx.confined = inputs[6], inputs[7]


def _backward(ctx, grad_features: Tensor, grad_density: Tensor) -> tuple:  # noqa: ANN001
    needed = (*ctx.needs_input_grad[:6], *ctx.needs_input_grad[8:], False)
    inputs = [None if tensor is None else tensor.detach().requires_grad_(need)
              for tensor, need in zip(ctx.saved_tensors, needed)]
    with torch.enable_grad():
        outputs = triplane_field_reference(*inputs[:6], ctx.box_warp, ctx.confined, inputs[6])
        wanted = [tensor for tensor in inputs if tensor is not None and tensor.requires_grad]
        grads = iter(torch.autograd.grad(outputs, wanted, (grad_features, grad_density)) if wanted else ())
    grad_inputs = [next(grads).to(tensor.dtype) if tensor is not None and tensor.requires_grad else None
                   for tensor in inputs]
    return (*grad_inputs[:6], None, None, grad_inputs[6])


triplane_field.register_autograd(_backward, setup_context=_setup_context)
