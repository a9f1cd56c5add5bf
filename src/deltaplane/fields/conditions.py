"""Condition tokens of the deltaplane cross-attention (spec §5.1): [audio, eye, null, angles, landmarks] → [B, 5, 64].

The audio token is the AudioEncoder's code (passed in); eye openness, head angles and the 6-D landmark feature are
frequency-encoded and lifted by small MLPs; the null token is a learned parameter shared by every sample. Neutral
inputs (zero angles, the mean eye openness, …) are the caller's choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

TOKEN_NAMES = ("audio", "eye", "null", "angles", "landmarks")
"""Order of the condition tokens (and of the last axis of the predictor's attention maps)."""
BROW_FEATURES = 2
"""Values `ConditionEncoderConfig.brows` appends to the landmark feature: one per brow."""
RANGE_CLAMP = 2.0
"""With `ConditionEncoderConfig.fitted_ranges`, how far outside the training frames' range (in half-ranges from its
centre) a driving frame's input may reach: a tracking error or an unseen pose stays near the phases trained on."""
RANGE_QUANTILES = (0.01, 0.99)
"""The training frames' range of an input for `ConditionEncoderConfig.fitted_ranges`: a few mistracked frames do
not squeeze the others."""


def frequency_encoding(x: Float[Tensor, "*batch dim"], num_frequencies: int,
                       include_input: bool = True) -> Float[Tensor, "*batch encoded"]:
    """NeRF encoding with frequencies 2^0 … 2^(F−1) (no π): [x, sin(2^0·x), cos(2^0·x), sin(2^1·x), …].

    Each sin / cos block holds all D inputs, so the output has D·(1 + 2F) channels (D·2F without the input).
    Computed in at least float32, as large frequencies times a bf16 input lose the phase.
    """
    x = x.to(torch.promote_types(x.dtype, torch.float32))
    frequencies = 2.0 ** torch.arange(num_frequencies, dtype=x.dtype, device=x.device)  # [F]
    phase = x.unsqueeze(-2) * frequencies[:, None]  # [..., F, D]
    encoded = torch.stack((phase.sin(), phase.cos()), dim=-2).flatten(-3)  # [..., F·2·D]: per frequency sin, cos
    return torch.cat((x, encoded), dim=-1) if include_input else encoded


def _mlp(in_features: int, width: int, num_layers: int) -> nn.Sequential:
    """Talk3D's simpleMLP: Linear(in, width), then (ReLU, Linear(width, width)) × (num_layers − 1), linear output."""
    layers: list[nn.Module] = [nn.Linear(in_features, width)]
    for _ in range(num_layers - 1):
        layers += [nn.ReLU(), nn.Linear(width, width)]
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class ConditionEncoderConfig:
    """Sizes of the condition encoders. Quirks fixed on purpose: angles in radians with few frequencies (the
    official encodes degrees with frequencies up to 2^9, whose phases wrap thousands of times), and a real
    nn.Parameter null token (the official draws a plain tensor per process)."""

    token_dim: int = 64
    """Width of every token (and of the MLPs' hidden layers)."""
    eye_frequencies: int = 4
    """Frequencies 2^0 … 2^3 for the scalar eye openness (eye aspect ratio, 0.05–0.4): the highest phase
    8 · 0.4 = 3.2 rad barely wraps. The official 16 frequencies (up to 2^15 on AU45 in [0, 2]) alias like the
    degree-valued angles did; 1 + 2·4 = 9 inputs."""
    angle_frequencies: int = 3
    """Frequencies 2^0, 2^1, 2^2 rad⁻¹ for (yaw, pitch, roll) in radians: the highest phase 4 · 0.6 = 2.4 rad
    stays inside (−π, π) for |angle| ≤ 0.6 rad, so no band wraps around (8 · 0.6 = 4.8 would); 3·7 = 21 inputs."""
    landmark_frequencies: int = 6
    """Frequencies 2^0 … 2^5 for the 6-D landmark feature in [−1, 1] (official; 6·13 = 78 inputs)."""
    landmark_dim: int = 6
    """Size of the landmark feature: points [30, 45, 36] as (x, y) (docs/conventions.md)."""
    brows: bool = False
    """Append each brow's height over its eye (`geometry.face_regions.brow_feature`, 2 values) to the landmark
    feature. The other tokens say where the head is and how open the eyes are, not where the brows are: a speaker
    who raises them (macron_fr_50s: std 4.3 px at 512², 2.5 px of it beyond a linear fit on the other tokens)
    leaves the field to average brows and forehead over the frames (docs/sharpness.md "The brows")."""
    mlp_layers: int = 3
    """Linear layers per condition MLP."""
    angles: bool = True
    """False: every frame's angle token is the frontal one (angles 0), so the head's pose reaches the render only
    through the camera and the deltaplane cannot redraw the head for each pose (docs/novel-views.md "The angle
    token"). The torso (`TriplaneTalkerConfig.torso_follow`) still follows the tracked angles."""

    fitted_ranges: bool = False
    """Map each input (eye openness, angles, landmark feature; per value) from its training frames' 1st–99th
    percentile range to [−1, 1] before the frequency encoding (`ConditionEncoder.fit`), clamped to ±`RANGE_CLAMP`. In
    their own units a clip's frames differ by a few hundredths (obama_20s: eye openness std 0.045, angles 0.014–0.072
    rad, landmark feature about 0.05), so the eye and angle tokens barely change from frame to frame; in tiny CPU
    runs the deltaplane then ignored both, and the GPU's renders do not blink (docs/lip-motion.md "Run 54")."""

    @property
    def landmark_inputs(self) -> int:
        """Size of the landmark token's input: the landmark feature, and the brows with `brows`."""
        return self.landmark_dim + BROW_FEATURES * self.brows


class ConditionEncoder(nn.Module):
    """Builds the 5 condition tokens [audio, eye, null, angles, landmarks] of the deltaplane cross-attention."""

    def __init__(self, config: ConditionEncoderConfig) -> None:
        super().__init__()
        self.config = config
        width = config.token_dim
        self.eye_mlp = _mlp(1 + 2 * config.eye_frequencies, width, config.mlp_layers)
        self.angle_mlp = _mlp(3 * (1 + 2 * config.angle_frequencies), width, config.mlp_layers)
        self.landmark_mlp = _mlp(config.landmark_inputs * (1 + 2 * config.landmark_frequencies), width,
                                 config.mlp_layers)
        self.null_token = nn.Parameter(torch.randn(1, 1, width))
        if config.fitted_ranges:  # only then: older checkpoints keep their tensors
            for name, size in (("eye", 1), ("angles", 3), ("landmarks", config.landmark_inputs)):
                self.register_buffer(f"{name}_range", torch.stack((torch.zeros(size), torch.ones(size))))

    @torch.no_grad()
    def fit(self, eye: Float[Tensor, " frames"], angles: Float[Tensor, "frames 3"],
            landmarks: Float[Tensor, "frames landmark_inputs"]) -> None:
        """With `fitted_ranges`: each input's (centre, half-width) of its training frames' `RANGE_QUANTILES`."""
        if not self.config.fitted_ranges:
            raise ValueError("ConditionEncoder.fit needs ConditionEncoderConfig.fitted_ranges")
        for name, values in (("eye", eye[:, None]), ("angles", angles), ("landmarks", landmarks)):
            low, high = torch.quantile(values.double(), torch.tensor(RANGE_QUANTILES, dtype=torch.float64,
                                                                     device=values.device), dim=0)
            getattr(self, f"{name}_range").copy_(torch.stack(((high + low) / 2, ((high - low) / 2).clamp_min(1e-6))))

    def ranged(self, name: str, values: Float[Tensor, "batch dim"]) -> Float[Tensor, "batch dim"]:
        """`values` in their training range's half-widths from its centre (`fitted_ranges`), or as given."""
        if not self.config.fitted_ranges:
            return values
        centre, half = getattr(self, f"{name}_range")
        return ((values - centre) / half).clamp(-RANGE_CLAMP, RANGE_CLAMP)

    def mlps(self) -> dict[str, nn.Sequential]:
        """The eye, angle and landmark tokens' MLPs, by input name."""
        return {"eye": self.eye_mlp, "angles": self.angle_mlp, "landmarks": self.landmark_mlp}

    def encoded_inputs(self, eye: Float[Tensor, " batch"], angles: Float[Tensor, "batch 3"],
                       landmarks: Float[Tensor, "batch landmark_inputs"]) -> dict[str, Float[Tensor, "batch _"]]:
        """What each of `mlps` reads: its input (ranged with `fitted_ranges`), frequency-encoded."""
        config = self.config
        if not config.angles:
            angles = torch.zeros_like(angles)
        return {"eye": frequency_encoding(self.ranged("eye", eye[:, None]), config.eye_frequencies),
                "angles": frequency_encoding(self.ranged("angles", angles), config.angle_frequencies),
                "landmarks": frequency_encoding(self.ranged("landmarks", landmarks), config.landmark_frequencies)}

    def forward(self, audio_code: Float[Tensor, "batch token_dim"], eye: Float[Tensor, " batch"],
                angles: Float[Tensor, "batch 3"], landmarks: Float[Tensor, "batch landmark_inputs"]
                ) -> Float[Tensor, "batch 5 token_dim"]:
        """`eye`: openness (eye aspect ratio); `angles`: camera (yaw, pitch, roll) in radians; `landmarks` in [−1, 1]."""
        inputs = self.encoded_inputs(eye, angles, landmarks)
        eye_token, angle_token, landmark_token = (mlp(inputs[name]) for name, mlp in self.mlps().items())
        null_token = self.null_token.expand(audio_code.shape[0], 1, -1)
        return torch.cat((audio_code[:, None], eye_token[:, None], null_token, angle_token[:, None],
                          landmark_token[:, None]), dim=1)  # [B, 5, token_dim]
