"""The documented metric keys of metrics.json (the report shows this glossary too).

`deltaplane evaluate --pred A --gt B` writes the keys below as they are. `deltaplane evaluate RUN_DIR` writes them
under prefixes: `test/` (the split rendered with its own audio and cameras, vs its frames), `view/NAME/` (the split's
audio rendered from another camera: identity and FID vs the split's frames, sync, mouth motion, faces),
`cross/NAME/` (the run driven by each file of --audio FILE or FOLDER; identity vs the mean embedding of the split's
frames, FID and mouth motion vs them). A metric that could not be computed
is absent and listed under `skipped` with the reason, never given as a number. PSNR of identical frames is
`Infinity` (JSON extension that Python's json module reads and writes).
"""

from __future__ import annotations

KEYS: dict[str, tuple[str, str]] = {
    "frames": ("", "frames compared (the shorter video's length at 25 fps)"),
    "width": ("", "frame width the metrics are computed at (the ground truth's; the prediction is resized)"),
    "height": ("", "frame height"),
    "psnr": ("↑", "PSNR in dB over the whole frame, mean over frames (identical frames: inf)"),
    "ssim": ("↑", "SSIM (Gaussian 11×11, σ 1.5) over the whole frame, mean over frames"),
    "psnr_face": ("↑", "PSNR inside the convex hull of the ground truth's 68 landmarks"),
    "ssim_face": ("↑", "SSIM at positions inside that hull"),
    "psnr_eyes": ("↑", "PSNR over both eyes: the ground truth's 68-landmark eye outlines grown by 0.06 face widths "
                       "(lids, lashes)"),
    "bias_eyes": ("→0", "mean render − ground truth over the eyes, grey levels 0–255: positive = paler, negative = "
                        "darker; a region wrong in one direction (washed-out eyes) shows here, noise does not"),
    "psnr_mouth": ("↑", "PSNR over the mouth: the outer lip outline grown by 0.03 face widths"),
    "bias_mouth": ("→0", "mean render − ground truth over the mouth, grey levels (as bias_eyes)"),
    "psnr_torso": ("↑", "PSNR below the head: the rows from 0.05 face widths under the ground truth's chin to the "
                        "bottom, within 0.75 face widths of the jaw's centre (neck, collar, shoulders)"),
    "bias_torso": ("→0", "mean render − ground truth there, grey levels (as bias_eyes)"),
    "lpips": ("↓", "LPIPS (AlexNet, user-given weights) over the whole frame"),
    "lpips_every": ("", "LPIPS runs on every k-th frame"),
    "lmd": ("↓", "landmark distance of mouth points 48–67, each set mean-centred, in pixels of a 512-wide frame"),
    "lmd_offset": ("↓", ("the part of lmd a constant mouth-shape error explains: the mean over frames of the "
                         "centred points' differences (a mouth on average too open, wide or thick), its mean point "
                         "length")),
    "lmd_motion": ("↓", "lmd with that constant offset taken from every frame: what the mouth's motion gets wrong"),
    "blink_error": ("↓", "mean |eye aspect ratio (prediction) − eye aspect ratio (ground truth)|"),
    "eyes/openness_std_ratio": ("→1", ("std over frames of the eye aspect ratio, prediction over ground truth: far "
                                       "under 1, eyes that do not blink (blink_error stays small all the same)")),
    "eyes/openness_correlation": ("↑", "correlation over frames of the eye aspect ratio with the ground truth's"),
    "id_distance": ("↓", "dlib 128-D face descriptor distance (same person below 0.6), sampled frames"),
    "id_same_person": ("↑", "fraction of sampled frames with a descriptor distance below 0.6"),
    "id_frames": ("", "sampled frames with a face in both videos"),
    "id_every": ("", "the identity descriptor runs on every k-th frame (about 95 ms per face on one core)"),
    "id_arcface": ("↑", "ArcFace cosine similarity (arcface_torch IResNet, user-given weights) of 5-point-aligned "
                        "112² faces, sampled frames as id_distance"),
    "faces/missing_pred": ("↓", "frames of the prediction where no face was found"),
    "faces/missing_gt": ("", "frames of the ground truth where no face was found"),
    "faces/missing": ("↓", "frames of this render where the tracker had no face (it follows a face from one detection "
                           "on, also through frames on which the detector alone would find none)"),
    "faces/detected": ("↑", "share of frames in which mediapipe's full-range face detector, run on the frame alone, "
                            "finds the tracked face (score ≥ 0.5): 1 = every frame looks like a face by itself"),
    "sync/correlation": ("↑", "Pearson correlation of inner-lip opening and the 1–4 kHz speech envelope at the best "
                              "offset (no weights needed; 0.2–0.45 on real talking-head clips)"),
    "sync/offset_frames": ("≈gt", "that best offset in frames within ±10 (positive: the mouth lags the sound); real "
                                  "clips sit anywhere in about −6…+6, so compare it with gt/sync/offset_frames"),
    "sync/lse_c": ("↑", "SyncNet LSE-C confidence (syncnet_v2.model, user-given)"),
    "sync/lse_d": ("↓", "SyncNet LSE-D distance"),
    "sync/lse_offset_frames": ("→0", "SyncNet's best audio-video offset in frames"),
    "gt/sync/correlation": ("", "the landmark sync score of the ground truth with its own audio (reference)"),
    "gt/sync/offset_frames": ("", "the ground truth's best offset (reference)"),
    "mouth/opening_std_ratio": ("→1", "std over frames of the inner-lip opening (points 60–67 over the outer-eye-"
                                      "corner distance) / the reference's: ground truth for test/ and view/, the "
                                      "split's frames for cross/ (how much this person moves their mouth); 0 = still"),
    "mouth/opening_mean_ratio": ("→1", "mean inner-lip opening / the reference's (below 1: a mouth kept too closed)"),
    "mouth/open_fraction": ("≈ref", "fraction of frames opened wider than the reference's median + 1 std (teeth "
                                    "showing); compare with mouth/open_fraction_reference"),
    "mouth/open_fraction_reference": ("", "the same fraction in the reference itself"),
    "sharpness_ratio": ("→1", "variance of the 3×3 Laplacian of the grey image inside the face hull, render over "
                              "reference: the ground truth's hull and frame for test/ and --pred/--gt; for view/ and "
                              "cross/, each render's own hull against the frontal render of the split (frame by frame "
                              "for views, ratio of means for other audio); below 1 = softer"),
    "detail_psnr_1": ("↑", "PSNR (peak 255) of the finest Laplacian-pyramid band of the grey image inside the ground "
                           "truth's face hull: only matching detail scores well (blur leaves the band empty, noise "
                           "adds to it)"),
    "detail_psnr_2": ("↑", "the same for the next octave (half resolution)"),
    "detail_gain_1": ("↑", "the ground truth's energy in the finest Laplacian-pyramid band over the render's error "
                           "there, in dB (inside its face hull): 0 = no better than a blur, which leaves the band "
                           "empty; below 0 = the render's detail is wrong (noise, misplaced texture)"),
    "detail_gain_2": ("↑", "the same for the next octave (half resolution)"),
    "background/view_change": ("↓", "mean |render − the split's frontal render of the same frame| in grey levels over "
                                     "the ground truth's background at least 10 % of the side from the person "
                                     "(128² grey): a static backdrop scores ~0, a background smeared by the view high"),
    "background/flicker": ("↓", "mean |frame t − frame t−1| in grey levels over that background"),
    "mesh/offset": ("↓", ("views: mean distance between the face mesh tracked on the render and the split's tracked "
                          "mesh as a rigid head shows it from this camera (lifted with its mean depth at the orbit "
                          "pivot's), in outer-eye-corner distances; mediapipe's depth is a model's estimate, so this "
                          "is agreement with the tracked shape, not with the true head")),
    "mesh/shape": ("↓", ("the same once each frame's mean offset is taken out: nearly free of the lifting depth, it "
                         "shows a part of the face drawn at another depth than the rest (a widened near cheek at a "
                         "turned view)")),
    "fid": ("↓", "Fréchet Inception distance (clean-fid's Inception-v3 features, user-given weights) of the sampled "
                 "frames vs the ground truth's; biased upwards below ~2048 frames: compare only runs scored alike"),
    "fid_frames": ("", "sampled frames per video in the FID (the smaller of the two sets)"),
    "fid_every": ("", "the Inception network runs on every k-th frame (~0.15 s per frame on a 2-core CPU)"),
}


def describe(key: str) -> tuple[str, str]:
    """(better, meaning) of a possibly prefixed key: `test/psnr`, `view/yaw+30/id_distance` …"""
    parts = key.split("/")
    for start in range(len(parts)):
        suffix = "/".join(parts[start:])
        if suffix in KEYS:
            return KEYS[suffix]
    return "", ""
