"""Deltaplane predictor: identity tri-plane + condition tokens → additive plane residual (spec §5.2–5.4).

    id planes [B,3,32,256²] ─roll-out + split down blocks─▶ [B,3,256,32²] (+ skips s1 @128, s2 @64)     encode()
        ─per-plane GroupNorm, Linear, 3D PE, 2 × (self-attn, cross-attn over the 5 tokens, GEGLU)─▶ + residual
        ─roll-out + split up blocks (+= s2, += s1)─▶ deltaplane [B,3,32,256²]                           decode()

The encoder does not see the tokens, so `encode` runs once per identity and `decode` once per frame batch; an
encoding of batch 1 is broadcast to the tokens' batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, overload

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from deltaplane.fields.deltaplane_blocks import (NUM_PLANES, BlockNorm, PlaneLayerNorm, PlaneLinear, SplitBlock,
                                                 roll_out, triplane_positional_encoding)


@dataclass(frozen=True)
class DeltaplaneConfig:
    """Sizes and the deliberate quirk choices of the deltaplane predictor. Defaults are Talk3D's (≈16.7 M params).

    * Final activation: the official decoder ends in BN → LeakyReLU(0.01), which makes the deltaplane almost
      non-negative, so it can mostly only *add* features to the identity planes. We default to a linear last layer
      ("none": Conv3×3 with a zero-initialised weight and bias, then the ×2 upsample) and keep the official ending as
      "leaky_relu", where the last norm's γ starts at 0 instead of the conv (the official zero conv → BN(train)
      divides a zero batch by √eps, so its first update blows the deltaplane up to unit variance at once).
      Either way the deltaplane is exactly 0 at init.
    * Block norm: BatchNorm as the official (trained with 4 frames per step). Call `.eval()` at inference so
      batch-1 frames use the running statistics. The encoder sees the same identity planes at every step, so its
      running statistics equal its batch statistics; the decoder's depend on the frames in the batch. "group"
      (GroupNorm, per plane) removes the train/eval difference for small-batch training.
    """

    plane_channels: int = 32
    """Channels per identity plane (C of [B, 3, C, H, W]); also the deltaplane's."""
    plane_resolution: int = 256
    """Side of the identity planes; must be divisible by 2^len(encoder_channels)."""
    encoder_channels: tuple[int, ...] = (64, 128, 256)
    """Channels per plane after each down block (each halves the resolution); the decoder mirrors them."""
    bottleneck_dim: int = 256
    """Width of the attention bottleneck; equals encoder_channels[-1] (the outer residual adds the two)."""
    num_heads: int = 4
    """Attention heads of the self- and cross-attention."""
    head_dim: int = 64
    """Width of one head; num_heads · head_dim == bottleneck_dim."""
    token_dim: int = 64
    """Width of the condition tokens (keys and values of the cross-attention)."""
    num_tokens: int = 5
    """Condition tokens per sample: [audio, eye, null, angles, landmarks]."""
    num_layers: int = 2
    """Transformer blocks in the bottleneck."""
    norm_groups: int = 32
    """Groups of the per-plane GroupNorm at the bottleneck input."""
    ff_mult: int = 4
    """GEGLU inner width = ff_mult · bottleneck_dim (the first linear projects to twice that)."""
    block_norm: BlockNorm = "batch"
    """Norm of the conv blocks: "batch" (official) or "group" (per-plane GroupNorm, batch-size independent)."""
    final_activation: Literal["none", "leaky_relu"] = "none"
    """Decoder ending: "none" = linear last layer (default); "leaky_relu" = the official BN → LeakyReLU(0.01)."""

    def __post_init__(self) -> None:
        if self.bottleneck_dim != self.encoder_channels[-1]:
            raise ValueError(f"bottleneck_dim {self.bottleneck_dim} must equal encoder_channels[-1]")
        if self.num_heads * self.head_dim != self.bottleneck_dim:
            raise ValueError(f"num_heads·head_dim = {self.num_heads * self.head_dim} ≠ {self.bottleneck_dim}")
        if self.plane_resolution % 2 ** len(self.encoder_channels):
            raise ValueError(f"plane_resolution {self.plane_resolution} is not divisible by the down-sampling")

    @property
    def grid_resolution(self) -> int:
        """Side of the bottleneck feature maps (32 for the defaults)."""
        return self.plane_resolution // 2 ** len(self.encoder_channels)

    @classmethod
    def tiny(cls) -> DeltaplaneConfig:
        """A CPU-test-sized predictor: 32-channel planes at 64², encoder (8, 16, 32), 2 heads of 16."""
        return cls(plane_resolution=64, encoder_channels=(8, 16, 32), bottleneck_dim=32, num_heads=2, head_dim=16)


class EncodedPlanes(NamedTuple):
    """The token-independent part of the predictor, cacheable per identity."""

    features: Float[Tensor, "batch 3 bottleneck grid grid"]
    """Output of the last down block."""
    skips: tuple[Tensor, ...]
    """Outputs of the other down blocks, finest first: s1 [B, 3, C1, H/2, W/2], s2 [B, 3, C2, H/4, W/4], …"""

    def expand(self, batch: int) -> EncodedPlanes:
        """Broadcast an encoding of batch 1 to `batch` (views, no copies)."""
        if self.features.shape[0] == batch:
            return self
        return EncodedPlanes(self.features.expand(batch, *self.features.shape[1:]),
                             tuple(skip.expand(batch, *skip.shape[1:]) for skip in self.skips))


class PlaneTransformerBlock(nn.Module):
    """Per-plane self-attention, cross-attention over the condition tokens shared by all planes, per-plane GEGLU."""

    def __init__(self, config: DeltaplaneConfig) -> None:
        super().__init__()
        dim, inner = config.bottleneck_dim, config.num_heads * config.head_dim
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        self.norm1 = PlaneLayerNorm(dim)
        self.self_qkv = PlaneLinear(dim, 3 * inner, bias=False)
        self.self_out = PlaneLinear(inner, dim)
        self.norm2 = PlaneLayerNorm(dim)
        self.cross_q = nn.Linear(dim, inner, bias=False)
        self.cross_k = nn.Linear(config.token_dim, inner, bias=False)
        self.cross_v = nn.Linear(config.token_dim, inner, bias=False)
        self.cross_out = nn.Linear(inner, dim)
        self.norm3 = PlaneLayerNorm(dim)
        self.ff_in = PlaneLinear(dim, 2 * config.ff_mult * dim)
        self.ff_out = PlaneLinear(config.ff_mult * dim, dim)

    def self_attention(self, x: Float[Tensor, "batch 3 tokens dim"]) -> Float[Tensor, "batch 3 tokens dim"]:
        batch, planes, num_tokens, _ = x.shape
        qkv = self.self_qkv(x).reshape(batch * planes, num_tokens, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # 3 × [B·3, heads, N, head_dim]
        out = F.scaled_dot_product_attention(query, key, value)  # [B·3, heads, N, head_dim]
        out = out.transpose(1, 2).reshape(batch, planes, num_tokens, -1)  # [B, 3, N, heads·head_dim]
        return self.self_out(out)

    def cross_attention(self, x: Float[Tensor, "batch 3 tokens dim"], conditions: Float[Tensor, "batch cond token_dim"]
                        ) -> tuple[Float[Tensor, "batch 3 tokens dim"], Float[Tensor, "batch 3 tokens cond"]]:
        """Softmax over the condition tokens; also returns the head-averaged attention weights."""
        heads = (self.num_heads, self.head_dim)
        query = self.cross_q(x).unflatten(-1, heads)  # [B, 3, N, heads, head_dim]
        key = self.cross_k(conditions).unflatten(-1, heads)  # [B, T, heads, head_dim]
        value = self.cross_v(conditions).unflatten(-1, heads)  # [B, T, heads, head_dim]
        logits = torch.einsum("bpnhd,bthd->bphnt", query, key) * self.head_dim ** -0.5
        weights = logits.softmax(dim=-1)  # [B, 3, heads, N, T]
        out = torch.einsum("bphnt,bthd->bpnhd", weights, value).flatten(-2)  # [B, 3, N, heads·head_dim]
        return self.cross_out(out), weights.mean(dim=2, dtype=torch.float32)

    def forward(self, x: Float[Tensor, "batch 3 tokens dim"], conditions: Float[Tensor, "batch cond token_dim"]
                ) -> tuple[Float[Tensor, "batch 3 tokens dim"], Float[Tensor, "batch 3 tokens cond"]]:
        x = x + self.self_attention(self.norm1(x))
        attended, attention = self.cross_attention(self.norm2(x), conditions)
        x = x + attended
        hidden, gate = self.ff_in(self.norm3(x)).chunk(2, dim=-1)
        return x + self.ff_out(hidden * F.gelu(gate)), attention


class PlaneAttentionBottleneck(nn.Module):
    """GroupNorm → Linear → (+ PE, transformer block) × L → + outer residual, all per plane (spec §5.3)."""

    def __init__(self, config: DeltaplaneConfig) -> None:
        super().__init__()
        dim = config.bottleneck_dim
        self.norm = nn.GroupNorm(NUM_PLANES * config.norm_groups, NUM_PLANES * dim, eps=1e-5)
        self.proj_in = PlaneLinear(dim, dim)
        self.blocks = nn.ModuleList(PlaneTransformerBlock(config) for _ in range(config.num_layers))
        self.register_buffer("positional_encoding",
                             triplane_positional_encoding(config.grid_resolution, dim), persistent=False)

    def forward(self, features: Float[Tensor, "batch 3 dim grid grid"], conditions: Float[Tensor, "batch cond token"]
                ) -> tuple[Float[Tensor, "batch 3 dim grid grid"], Float[Tensor, "batch layers 3 grid2 cond"]]:
        batch, planes, dim, height, width = features.shape
        x = self.norm(features.reshape(batch, planes * dim, height, width))  # [B, 3·dim, h, w]
        x = x.reshape(batch, planes, dim, height * width).transpose(2, 3)  # [B, 3, h·w, dim]: token = row·w + col
        x = self.proj_in(x)
        maps = []
        for block in self.blocks:
            x, attention = block(x + self.positional_encoding, conditions)
            maps.append(attention)
        x = x.transpose(2, 3).reshape(batch, planes, dim, height, width)  # [B, 3, dim, h, w]
        return x + features, torch.stack(maps, dim=1)  # maps: [B, L, 3, h·w, T]


class DeltaplanePredictor(nn.Module):
    """Talk3D's deltaplane predictor F: (identity planes, condition tokens) → deltaplane, zero at initialisation.

    Apply it as planes = id_planes + deltaplane (no scale). Attention maps are [B, layers, 3, grid², tokens],
    heads averaged, summing to 1 over the tokens.
    """

    def __init__(self, config: DeltaplaneConfig) -> None:
        super().__init__()
        self.config = config
        widths = (config.plane_channels, *config.encoder_channels)
        self.down = nn.ModuleList(SplitBlock(NUM_PLANES * widths[k], widths[k + 1], "down", config.block_norm)
                                  for k in range(len(config.encoder_channels)))
        last = "zero_linear" if config.final_activation == "none" else "zero_norm_act"
        self.up = nn.ModuleList(SplitBlock(NUM_PLANES * widths[k + 1], widths[k], "up", config.block_norm,
                                           output=last if k == 0 else "norm_act")
                                for k in reversed(range(len(config.encoder_channels))))
        self.bottleneck = PlaneAttentionBottleneck(config)

    def encode(self, id_planes: Float[Tensor, "batch 3 channels height width"]) -> EncodedPlanes:
        """Run the token-independent encoder (cache it per identity; batch 1 broadcasts in `decode`)."""
        x, outputs = id_planes, []
        for block in self.down:
            x = block(roll_out(x))
            outputs.append(x)
        return EncodedPlanes(outputs[-1], tuple(outputs[:-1]))

    @overload
    def decode(self, encoded: EncodedPlanes, tokens: Tensor, return_attention: Literal[False] = False) -> Tensor: ...
    @overload
    def decode(self, encoded: EncodedPlanes, tokens: Tensor, return_attention: Literal[True]
               ) -> tuple[Tensor, Tensor]: ...

    def decode(self, encoded: EncodedPlanes, tokens: Float[Tensor, "batch num_tokens token_dim"],
               return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Bottleneck + decoder: deltaplane [B, 3, C, H, W] (and the attention maps if asked)."""
        if tokens.shape[1:] != (self.config.num_tokens, self.config.token_dim):
            raise ValueError(f"tokens must be [B, {self.config.num_tokens}, {self.config.token_dim}], "
                             f"got {list(tokens.shape)}")
        encoded = encoded.expand(tokens.shape[0])
        x, attention = self.bottleneck(encoded.features, tokens)
        skips = encoded.skips[::-1]  # coarsest first: s2, s1
        for index, block in enumerate(self.up):
            x = block(roll_out(x))
            if index < len(skips):
                x = x + skips[index]
        return (x, attention) if return_attention else x

    @overload
    def forward(self, id_planes: Tensor, tokens: Tensor, return_attention: Literal[False] = False) -> Tensor: ...
    @overload
    def forward(self, id_planes: Tensor, tokens: Tensor, return_attention: Literal[True]) -> tuple[Tensor, Tensor]: ...

    def forward(self, id_planes: Float[Tensor, "batch 3 channels height width"],
                tokens: Float[Tensor, "batch num_tokens token_dim"],
                return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """decode(encode(id_planes), tokens); id_planes of batch 1 broadcast to the tokens' batch."""
        return self.decode(self.encode(id_planes), tokens, return_attention=return_attention)
