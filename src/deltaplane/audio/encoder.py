"""Audio encoder (RAD-NeRF / Talk3D, spec §5.1): 8 per-frame feature windows → one 64-D audio code.

AudioNet encodes every window (16 feature frames × D) into a 64-D code; AudioAttNet then mixes the 8 consecutive
codes t−4 … t+3 with softmax weights predicted from them (or, with `AudioEncoderConfig.mixing` = "concat", a small
MLP reads all 8 codes side by side). Unlike the official, the whole batch runs at once.
`ema_smooth` is the inference-time `--lip_smoothing` filter over the per-frame codes of a clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, overload

import torch
from jaxtyping import Float
from torch import Tensor, nn

LEAKY_SLOPE = 0.02
CONCAT_HIDDEN = 128
"""Hidden width of the "concat" mixing's MLP."""


@dataclass(frozen=True)
class AudioEncoderConfig:
    """Sizes of the audio encoder; `feature_dim` must match the dataset's feature extractor."""

    feature_dim: int = 44
    """D of each feature frame: 80 for log-mel, 44 for wav2vec CTC logits (Talk3D), 29 for DeepSpeech,
    768 / 1024 for HuggingFace hidden states."""
    window: int = 16
    """Feature frames per window (16 at 50 Hz = 0.32 s); the four stride-2 convolutions reduce up to 16 to 1."""
    code_dim: int = 64
    """Width of the audio code (the audio token)."""
    num_windows: int = 8
    """Consecutive per-frame windows t−4 … t+3 mixed by the attention net."""
    normalize: bool = False
    """Standardise the features per utterance before the encoder (`audio.features.normalize_utterance`): the
    training clip and each driving audio file by their own statistics."""
    mixing: Literal["attention", "concat"] = "attention"
    """How the window codes become one: "attention" = AudioAttNet's softmax-weighted mean (Talk3D), which can only
    average them; "concat" = an MLP over the codes side by side (W·C → `CONCAT_HIDDEN` → C), which can also read
    how the sound changes from window to window (docs/lip-motion.md "Window codes side by side")."""

    def __post_init__(self) -> None:
        if not 1 <= self.window <= 16:
            raise ValueError(f"window must be in [1, 16] (four stride-2 convs reduce it to 1), got {self.window}")
        if self.mixing not in ("attention", "concat"):
            raise ValueError(f"mixing must be 'attention' or 'concat', got {self.mixing!r}")


class AudioEncoding(NamedTuple):
    code: Float[Tensor, "batch code_dim"]
    """The window codes mixed into one (`AudioEncoder.mix`)."""
    window_codes: Float[Tensor, "batch windows code_dim"]
    """AudioNet's code of every window."""
    attention: Float[Tensor, "batch windows"] | None
    """Softmax weights over the windows (sum to 1); None with the "concat" mixing, which weighs no window alone."""


def _conv(in_channels: int, out_channels: int, stride: int) -> list[nn.Module]:
    return [nn.Conv1d(in_channels, out_channels, 3, stride=stride, padding=1), nn.LeakyReLU(LEAKY_SLOPE)]


class AudioEncoder(nn.Module):
    """AudioNet + AudioAttNet: windows [B, 8, 16, D] → audio code [B, 64]."""

    def __init__(self, config: AudioEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.window_net = nn.Sequential(*_conv(config.feature_dim, 32, 2), *_conv(32, 32, 2), *_conv(32, 64, 2),
                                        *_conv(64, 64, 2))  # length 16 → 8 → 4 → 2 → 1
        self.window_fc = nn.Sequential(nn.Linear(64, 64), nn.LeakyReLU(LEAKY_SLOPE), nn.Linear(64, config.code_dim))
        if config.mixing == "concat":
            self.concat_net = nn.Sequential(nn.Linear(config.num_windows * config.code_dim, CONCAT_HIDDEN),
                                            nn.LeakyReLU(LEAKY_SLOPE), nn.Linear(CONCAT_HIDDEN, config.code_dim))
        else:
            self.attention_net = nn.Sequential(*_conv(config.code_dim, 16, 1), *_conv(16, 8, 1), *_conv(8, 4, 1),
                                               *_conv(4, 2, 1), *_conv(2, 1, 1))
            self.attention_fc = nn.Linear(config.num_windows, config.num_windows)

    def window_codes(self, windows: Float[Tensor, "batch windows length feature_dim"]
                     ) -> Float[Tensor, "batch windows code_dim"]:
        """AudioNet on every window of the batch at once."""
        batch, num_windows, length, dim = windows.shape
        if (num_windows, length, dim) != (self.config.num_windows, self.config.window, self.config.feature_dim):
            raise ValueError(f"windows must be [B, {self.config.num_windows}, {self.config.window}, "
                             f"{self.config.feature_dim}], got {list(windows.shape)}")
        x = windows.reshape(batch * num_windows, length, dim).transpose(1, 2)  # [B·W, D, L]: features on channels
        x = self.window_net(x).squeeze(-1)  # [B·W, 64]
        return self.window_fc(x).reshape(batch, num_windows, -1)  # [B, W, code_dim]

    def mix(self, window_codes: Float[Tensor, "batch windows code_dim"]
            ) -> tuple[Float[Tensor, "batch code_dim"], Float[Tensor, "batch windows"] | None]:
        """AudioAttNet: softmax weights over the windows from a 1-D conv over them, then the weighted sum; with the
        "concat" mixing the MLP over the concatenated codes (and no weights)."""
        if self.config.mixing == "concat":
            return self.concat_net(window_codes.flatten(1)), None
        scores = self.attention_net(window_codes.transpose(1, 2)).squeeze(1)  # [B, W]
        attention = self.attention_fc(scores).softmax(dim=-1)  # [B, W]
        return torch.einsum("bw,bwc->bc", attention, window_codes), attention

    @overload
    def forward(self, windows: Tensor, return_attention: Literal[False] = False) -> Tensor: ...
    @overload
    def forward(self, windows: Tensor, return_attention: Literal[True]) -> AudioEncoding: ...

    def forward(self, windows: Float[Tensor, "batch windows length feature_dim"],
                return_attention: bool = False) -> Tensor | AudioEncoding:
        """The audio code [B, code_dim]; with `return_attention`, also the window codes and the mixing weights."""
        codes = self.window_codes(windows)
        code, attention = self.mix(codes)
        return AudioEncoding(code, codes, attention) if return_attention else code


def ema_smooth(codes: Float[Tensor, "time code_dim"], alpha: float = 0.2) -> Float[Tensor, "time code_dim"]:
    """Talk3D's `--lip_smoothing`: a_0 = c_0, a_t = alpha · a_{t−1} + (1 − alpha) · c_t over a clip's codes."""
    if codes.shape[0] == 0:
        return codes
    smoothed = [codes[0]]
    for code in codes[1:]:
        smoothed.append(alpha * smoothed[-1] + (1.0 - alpha) * code)
    return torch.stack(smoothed)
