"""How much the aligned face jitters from frame to frame (docs/sharpness.md "Registration", docs/dataset.md
"Alignment smoothing"), what that costs a field fitted to the frames, and whether a run's learned per-frame shifts
(`training.registration`) follow it.

Phase correlation (`phase_shift`, Hann window) of each aligned frame's eye–nose region (the box of landmarks
17–47) against the clip's median frame, and against the next frame; displacements over MAX_SHIFT px are dropped as
failures.

    python scripts/alignment_jitter.py DATASET [RUN_DIR]

Prints the mean frame-to-frame displacement and the standard deviation of what a Gaussian over SMOOTH frames does not
explain; the consecutive frames' displacement beside the one the cameras predict (the rigid landmarks triangulated
as one 3D shape seen by every frame's camera) and the one the rigid landmarks show themselves; how far the aligned
rigid landmarks lie from that shape's view, and the scale and turn of the similarity that would close the gap in
each frame (a scale that follows the pitch is the template alignment's, docs/dataset.md "Alignment smoothing"); and
how much of the frames' Laplacian energy the mean of `KEEP_WINDOWS` consecutive frames keeps, as they are and with
the motion the cameras predict taken out, in the eye–nose box and in the forehead's above the brows: a field draws
the mean of what its cameras cannot tell apart, so misregistration shows as a loss (the frames' own noise lowers it
too, alike for any alignment); and the consecutive displacement of the backdrop's top corners and of the torso
(`OUTSIDE_FACE`), which an alignment that holds the face still moves instead, and the PSNR of each frame against
the mean of the frames around it, in the face's box and outside it (`window_mean_psnr`). With RUN_DIR (holding
`registration_shifts.npy` from `scripts/gpu_lip_motion.py` and `driving_tracks.npz`), the correlation of the
learned shifts with the displacement of the same training frames, and with their mouth's opening
(`evaluation.face.mouth_opening` of the tracked landmarks: a shift that took up the mouth's motion would follow
it), per axis.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from jaxtyping import Bool, Float
from numpy import ndarray
from scipy.ndimage import gaussian_filter1d, uniform_filter1d
from torch import Tensor

from deltaplane.checkpoint import DRIVING_TRACKS
from deltaplane.data.schema import FRAMES_VIDEO, TRACKS
from deltaplane.evaluation.face import mouth_opening
from deltaplane.evaluation.pixels import laplacian_variance
from deltaplane.geometry.cameras import project, triangulate
from deltaplane.media.video import iter_frames
from deltaplane.preprocess.align import RIGID_INDICES, cv2_affine

MAX_SHIFT = 6.0
"""Larger displacements (px) are taken as failures of the correlation and dropped."""
SMOOTH = 3.0
"""σ (frames) of the Gaussian whose residual is the jitter."""
KEEP_WINDOWS = (7, 25)
"""Consecutive frames averaged for the Laplacian-energy measure."""
OUTSIDE_FACE = {"backdrop, top left": (0.0, 0.0, 0.25, 0.375), "backdrop, top right": (0.75, 0.0, 1.0, 0.375),
                "torso": (0.25, 0.8125, 0.75, 1.0)}
"""Boxes (x0, y0, x1, y1, fractions of the side) away from the face: an alignment that holds the face still moves
what does not follow the head, which the cameras of a whole-frame field do not explain either."""
FOREHEAD = 0.12
"""How far above the brows the forehead box reaches, as a fraction of the frame's side."""


def landmark_box(tracks: dict[str, ndarray], first: int, last: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the box of landmarks first..last over the clip (2nd to 98th percentile)."""
    points = tracks["landmarks_aligned"][:, first:last + 1].reshape(-1, 2)
    (x0, y0), (x1, y1) = np.percentile(points, 2, axis=0).astype(int), np.percentile(points, 98, axis=0).astype(int)
    return x0, y0, x1, y1


def forehead_box(tracks: dict[str, ndarray], size: int) -> tuple[int, int, int, int]:
    """The brows' box (landmarks 17–26) raised to FOREHEAD of the frame above them: a region the phase
    correlation of the eye–nose box does not see."""
    x0, y0, x1, y1 = landmark_box(tracks, 17, 26)
    return x0, max(y0 - round(FOREHEAD * size), 0), x1, y1


def phase_shift(reference: Float[ndarray, "H W"], image: Float[ndarray, "H W"], window: Float[ndarray, "H W"]
                ) -> tuple[float, float]:
    """(dx, dy) of `image` against `reference`: the peak of their windowed, normalised cross-power spectrum, refined
    by a parabola through it and its neighbours along each axis (mean error 0.07 / 0.12 px in x / y on blurred
    noise shifted by up to 2 px, 0.24 px at most). Written out because `cv2.phaseCorrelate` of OpenCV 5.0.0 gives
    other answers for the same input at some sizes (108 rows: a crop of macron_fr_50s correlated with its median
    moved by 79 px, then 93 px)."""
    product = np.fft.fft2(image * window) * np.conj(np.fft.fft2(reference * window))
    surface = np.fft.ifft2(product / np.maximum(np.abs(product), 1e-12)).real
    peak = np.unravel_index(np.argmax(surface), surface.shape)
    shift = []
    for axis in (1, 0):
        size = surface.shape[axis]
        left, centre, right = (surface[tuple((p + step) % surface.shape[a] if a == axis else p
                                             for a, p in enumerate(peak))] for step in (-1, 0, 1))
        curvature = left - 2 * centre + right
        offset = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
        shift.append(float((peak[axis] + offset + size / 2) % size - size / 2))
    return shift[0], shift[1]


def displacements(gray: Float[ndarray, "frames H W"], box: tuple[int, int, int, int]
                  ) -> tuple[Float[ndarray, "frames 2"], Float[ndarray, "pairs 2"]]:
    """(x, y) displacement of each frame's eye–nose region from the clip's median, and from each frame to the
    next, in pixels."""
    x0, y0, x1, y1 = box
    crops = gray[:, y0:y1, x0:x1]
    reference = np.median(crops, axis=0)
    window = cv2.createHanningWindow(reference.shape[::-1], cv2.CV_64F)
    from_median = np.array([phase_shift(reference, crop, window) for crop in crops])
    consecutive = np.array([phase_shift(crops[i], crops[i + 1], window) for i in range(len(crops) - 1)])
    return from_median, consecutive


def least_squares_similarity(source: Float[Tensor, "frames points 2"], target: Float[Tensor, "frames points 2"]
                             ) -> Float[Tensor, "frames 2 3"]:
    """Per frame, the similarity mapping `source` onto `target` with the least squared error (closed form:
    z = Σ conj(s̃)·t̃ / Σ|s̃|² over the centred points as complex numbers), differentiable in both."""
    source_mean, target_mean = source.mean(1, keepdim=True), target.mean(1, keepdim=True)
    centred, goal = source - source_mean, target - target_mean
    norm = centred.square().sum((1, 2))
    a = (centred * goal).sum((1, 2)) / norm
    b = (centred[..., 0] * goal[..., 1] - centred[..., 1] * goal[..., 0]).sum(1) / norm
    linear = torch.stack((torch.stack((a, -b), -1), torch.stack((b, a), -1)), -2)  # [T, 2, 2]
    shift = target_mean[:, 0] - (source_mean[:, 0, None, :] * linear).sum(-1)  # t̄ − L·s̄
    return torch.cat((linear, shift[..., None]), dim=-1)


def camera_view(tracks: dict[str, ndarray]
                ) -> tuple[Float[ndarray, "frames points 2"], Float[ndarray, "frames points 2"]]:
    """The rigid landmarks (`RIGID_INDICES`) where the aligned frames show them, and where the cameras see the one
    rigid 3D shape triangulated from them (`geometry.cameras.triangulate`)."""
    seen = torch.from_numpy(tracks["landmarks_aligned"][:, list(RIGID_INDICES)]).double()  # [T, P, 2]
    cam2world = torch.from_numpy(tracks["cam2world"]).double()
    intrinsics = torch.from_numpy(tracks["intrinsics"]).double()
    shape = triangulate(seen, cam2world, intrinsics)
    return seen.numpy(), project(shape.expand(len(seen), -1, -1), cam2world, intrinsics).numpy()


def mean_keeps(gray: Float[ndarray, "frames H W"], box: tuple[int, int, int, int], window: int,
               views: Float[ndarray, "frames points 2"] | None = None) -> float:
    """Laplacian energy in `box` of the mean of `window` consecutive frames over their own mean energy, averaged
    over windows starting every 5th frame. With `views` (where the cameras see the rigid landmarks, `camera_view`)
    each frame is first warped (bicubic) onto the window's middle frame by the similarity between the two views:
    the motion the cameras themselves predict, a rotating head's parallax, no longer counts against the frames."""
    x0, y0, x1, y1 = box
    mask = np.zeros(gray.shape[1:], dtype=bool)
    mask[y0:y1, x0:x1] = True

    def energy(image: ndarray) -> float:
        return laplacian_variance(np.repeat(image.round().clip(0, 255).astype(np.uint8)[..., None], 3, -1), mask)

    ratios = []
    for start in range(0, len(gray) - window + 1, 5):
        frames = gray[start:start + window]
        if views is not None:
            middle = torch.from_numpy(views[start + window // 2]).expand(window, -1, -1)
            onto = least_squares_similarity(torch.from_numpy(views[start:start + window]), middle).numpy()
            frames = np.stack([cv2.warpAffine(frame, cv2_affine(matrix), frame.shape[::-1], flags=cv2.INTER_CUBIC,
                                              borderMode=cv2.BORDER_REPLICATE) for frame, matrix in zip(frames, onto)])
        ratios.append(energy(frames.mean(0)) / np.mean([energy(frame) for frame in frames]))
    return float(np.mean(ratios))


def window_mean_psnr(gray: Float[ndarray, "frames H W"], window: int, mask: Bool[ndarray, "H W"]) -> float:
    """PSNR (dB, grey levels) of each frame against the mean of the `window` frames around it, over the pixels of
    `mask`: how well one static drawing (what a field without per-frame freedom draws) matches the frames there."""
    error = np.square(gray - uniform_filter1d(gray, window, axis=0, mode="nearest"))[:, mask].mean()
    return float(10 * np.log10(255.0**2 / error))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("run_dir", type=Path, nargs="?")
    args = parser.parse_args()
    tracks = dict(np.load(args.dataset / TRACKS))
    gray = np.stack([frame.mean(-1).astype(np.float32) for frame in iter_frames(args.dataset / FRAMES_VIDEO)])
    box = landmark_box(tracks, 17, 47)
    moved, consecutive = displacements(gray, box)
    valid = (np.abs(moved) < MAX_SHIFT).all(1)
    kept = moved[valid]
    residual = kept - gaussian_filter1d(kept, SMOOTH, axis=0, mode="nearest")
    print(f"{valid.sum()} of {len(moved)} frames correlated; mean |frame-to-frame| x/y "
          f"{np.abs(np.diff(kept, axis=0)).mean(0).round(2)} px; std not explained by σ = {SMOOTH} frames "
          f"{residual.std(0).round(2)} px")
    paired = (np.abs(consecutive) < MAX_SHIFT).all(1)
    seen, expected = camera_view(tracks)
    step, predicted = consecutive[paired], np.diff(expected.mean(1), axis=0)[paired]
    print(f"consecutive frames ({paired.sum()} correlated): mean |displacement| x/y {np.abs(step).mean(0).round(2)} "
          f"px, predicted by the cameras {np.abs(predicted).mean(0).round(2)} px, unexplained std "
          f"{(step - predicted).std(0).round(2)} px")
    landmark_step = np.diff(seen.mean(1), axis=0)[paired]
    agreement = [np.corrcoef(landmark_step[:, axis], step[:, axis])[0, 1] for axis in range(2)]
    print(f"rigid landmarks' own consecutive displacement: mean |.| x/y {np.abs(landmark_step).mean(0).round(2)} px, "
          f"correlation with the pixels' x {agreement[0]:.2f}, y {agreement[1]:.2f}")
    similarity = least_squares_similarity(torch.from_numpy(expected), torch.from_numpy(seen)).numpy()
    scale = np.sqrt(np.linalg.det(similarity[:, :, :2]))
    turn = np.degrees(np.arctan2(similarity[:, 1, 0], similarity[:, 0, 0]))
    misfit = np.sqrt(np.square(seen - expected).sum(-1).mean())
    print(f"aligned rigid landmarks against the cameras' view, per frame: RMS {misfit:.2f} px; "
          f"best similarity's scale std {scale.std():.4f} (correlation with the pitch "
          f"{np.corrcoef(scale, tracks['angles'][:, 1])[0, 1]:.2f}), turn std {turn.std():.2f}°")
    for name, region in (("eye–nose", box), ("forehead", forehead_box(tracks, gray.shape[1]))):
        print(f"{name} box, Laplacian energy kept by the mean of " +
              ", ".join(f"{window} frames {mean_keeps(gray, region, window):.3f} (the cameras' motion taken out "
                        f"{mean_keeps(gray, region, window, expected):.3f})" for window in KEEP_WINDOWS))
    for name, fractions in OUTSIDE_FACE.items():
        region = tuple(round(fraction * gray.shape[1]) for fraction in fractions)
        outside = displacements(gray, region)[1]
        outside = outside[(np.abs(outside) < MAX_SHIFT).all(1)]
        print(f"{name}: consecutive frames ({len(outside)} correlated), mean |displacement| x/y "
              f"{np.abs(outside).mean(0).round(2)} px")
    face = np.zeros(gray.shape[1:], dtype=bool)
    x0, y0, x1, y1 = landmark_box(tracks, 0, 67)
    face[y0:y1, x0:x1] = True
    print("PSNR of each frame against the mean of the frames around it, face box / the rest: " + ", ".join(
        f"{window} frames {window_mean_psnr(gray, window, face):.2f} / {window_mean_psnr(gray, window, ~face):.2f} dB"
        for window in KEEP_WINDOWS))
    if args.run_dir is not None:
        learned = np.load(args.run_dir / "registration_shifts.npy")
        indices = np.load(args.run_dir / DRIVING_TRACKS)["indices"]
        ok = valid[indices]
        landmarks = tracks["landmarks_aligned"][indices]
        openings = np.array([mouth_opening(points) for points in landmarks])
        correlation = [np.corrcoef(moved[indices][ok, axis], learned[ok, axis])[0, 1] for axis in range(2)]
        with_mouth = [np.corrcoef(openings, learned[:, axis])[0, 1] for axis in range(2)]
        print(f"learned shifts: RMS x/y {np.sqrt(np.square(learned).mean(0)).round(2)} px; correlation with the "
              f"displacement x {correlation[0]:.2f}, y {correlation[1]:.2f}; with the mouth's opening "
              f"x {with_mouth[0]:.2f}, y {with_mouth[1]:.2f}")


if __name__ == "__main__":
    main()
