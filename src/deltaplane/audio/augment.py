"""Speaker augmentation of the training audio: the same speech as other voices and rooms would give it.

A person-specific audio encoder trained on one voice reads that voice's timbre as mouth information, and lips stop
moving with another speaker (issue 9). Training on perturbed copies of the clip's own speech, whose frames still
match the video frame for frame, teaches it to ignore what differs between speakers:

* vocal-tract length: the spectrum's frequency axis stretched by a factor (formants of a shorter or longer vocal
  tract; `features.mel_filterbank`'s `warp`);
* background noise at a random signal-to-noise ratio (pink-ish, like a room or a café).

Speed changes are left out on purpose: they would move the audio against the video frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from jaxtyping import Float

from deltaplane.audio.features import frame_windows, log_mel


@dataclass(frozen=True)
class SpeakerAugmentConfig:
    """How many perturbed copies of the training audio to make, and how far they may go."""

    copies: int = 0
    """Perturbed copies (0 = off); each training step takes the original or one copy at random."""
    warp_range: tuple[float, float] = (0.84, 1.2)
    """Vocal-tract-length factors (a female voice reads about 1.15–1.2 of a male one's formants)."""
    snr_range_db: tuple[float, float] = (8.0, 40.0)
    """Signal-to-noise ratios of the added noise, in dB of the speech's RMS."""
    seed: int = 0
    stratified: bool = False
    """Spread the copies over the ranges: copy k draws its warp from the k-th of `copies` equal slices of
    `warp_range`, and its signal-to-noise ratio from a slice of `snr_range_db` in shuffled order, so that no draw
    leaves part of either range untried. With two copies drawn uniformly, the draw moved the regression's landmark
    distance by 20 %; six copies agreed within 0.07 over seeds on the CPU, stratified or not (docs/lip-motion.md
    "Run 19"): stratifying guarantees the coverage rather than measuring better."""


def stratified_perturbations(config: SpeakerAugmentConfig, rng: np.random.Generator
                              ) -> list[tuple[float, float]]:
    """(vocal-tract warp, SNR in dB) of each copy: one slice of each range per copy
    (`SpeakerAugmentConfig.stratified`)."""

    def slices(bounds: tuple[float, float], order: np.ndarray) -> np.ndarray:
        low, high = bounds
        return low + (order + rng.uniform(size=config.copies)) / config.copies * (high - low)

    warps = slices(config.warp_range, np.arange(config.copies))
    snrs = slices(config.snr_range_db, rng.permutation(config.copies))
    return [(float(w), float(s)) for w, s in zip(warps, snrs)]


def pink_noise(num_samples: int, rng: np.random.Generator) -> Float[np.ndarray, " samples"]:
    """Unit-RMS noise with a 1/f power spectrum (white noise shaped in the frequency domain)."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    frequencies = np.arange(spectrum.shape[0], dtype=np.float64)
    spectrum /= np.sqrt(np.maximum(frequencies, 1.0))
    noise = np.fft.irfft(spectrum, n=num_samples)
    return (noise / max(float(np.sqrt(np.mean(noise ** 2))), 1e-12)).astype(np.float32)


def augmented_windows(samples: Float[np.ndarray, " samples"], num_frames: int, fps: float,
                      config: SpeakerAugmentConfig) -> Float[np.ndarray, "copies frames 16 80"]:
    """Log-mel frame windows of `config.copies` perturbed copies of 16 kHz `samples` (the default features)."""
    rng = np.random.default_rng(config.seed)
    speech_rms = max(float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))), 1e-6)
    planned = stratified_perturbations(config, rng) if config.stratified else None
    copies = []
    for copy in range(config.copies):
        warp, snr = planned[copy] if planned else (float(rng.uniform(*config.warp_range)),
                                                   float(rng.uniform(*config.snr_range_db)))
        noisy = samples + pink_noise(samples.shape[0], rng) * speech_rms * 10.0 ** (-snr / 20.0)
        copies.append(frame_windows(log_mel(noisy.astype(np.float32), warp=warp), num_frames, fps))
    return np.stack(copies) if copies else np.zeros((0, num_frames, 16, 80), np.float32)
