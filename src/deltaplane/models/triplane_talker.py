"""The Talk3D talker: identity triplane + audio-driven deltaplane → volume rendering of the whole frame → SR.

identity planes [3, C, H, W] ──┬──────────────────────────────┐
                               └─ DeltaplanePredictor(tokens) ─┴─ + ─→ sample (x,y),(x,z),(z,y) → OSG decoder
tokens [B, 5, 64] = [audio, eye, null, angles, landmarks]            → 48 + 48 samples per ray, midpoint compositing
                                                                     → 32-channel feature image (render res)
                                                                     → super-resolution → RGB (output res)

The identity planes are learned directly from the video (no external prior); `load_identity_planes` accepts planes
from a generator (EG3D prior) without any other change.

With `audio_token="lips"` the audio token carries a lip vector (`fields.lips`): the tracked mouth shape during
training, the audio encoder's regression of it at inference.

With `background="plate"` the field renders the person only and is composited over a background plate recovered
from the video (`data.background`), a textured plane behind the head that novel views see with parallax
(`render.plate`, docs/conventions.md "Background plate").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from deltaplane import losses
from deltaplane.audio.encoder import AudioEncoder, AudioEncoderConfig
from deltaplane.devices import host_to_device
from deltaplane.fields.conditions import ConditionEncoder, ConditionEncoderConfig
from deltaplane.fields.deltaplane import DeltaplaneConfig, DeltaplanePredictor
from deltaplane.fields.lips import LipConfig, LipVector
from deltaplane.fields.resample import bilinear_upsample2x
from deltaplane.fields.superres import SuperResolution, SuperResolutionConfig
from deltaplane.fields.triplane import (Confinement, OSGDecoderConfig, TriplaneField, blur_along_x, box_weights,
                                       sample_triplane, support_rectangles)
from deltaplane.geometry.cameras import (DEFAULT_FOCAL, Cameras, intrinsics_from_focal, orbit_cam2world, torso_frame,
                                        transform_points)
from deltaplane.geometry.face_depth import FACE_VERTICES, camera_depth, sample_pixels
from deltaplane.geometry.lips import closed_share, shape_opening
from deltaplane.geometry.novel_view import (NovelViewConfig, lift_face_points, point_rays, random_offsets,
                                            rotate_about_origin, visible_points)
from deltaplane.geometry.precision import full_precision
from deltaplane.geometry.rays import pixel_rays
from deltaplane.geometry.solid import SolidConfig, choose_rays, empty_points, interior_points
from deltaplane.render.plate import (blend_plate, over_plate, pixel_coordinates, plane_coordinates, sample_plate,
                                     unwarp_coordinates)
from deltaplane.render.volume import VolumeRenderConfig, render_rays
from deltaplane.structs import Conditions, FrameBatch, LipFrames, RenderOutput


@dataclass(frozen=True)
class LossWeights:
    """Weights of the named loss terms (Talk3D's values where it has one)."""

    l1_raw: float = 16.0
    """L1 of the volume-rendered RGB vs the ground truth at the rendering resolution."""
    l1_sr: float = 16.0
    """L1 of the super-resolved RGB vs the ground truth at the output resolution."""
    mouth: float = 15.0
    """Mean squared error inside the lower-face mask at the rendering resolution."""
    mouth_box: float = 0.0
    """L1 of the super-resolved RGB inside the mouth box at the output resolution (the mouth is ~10 px tall at the
    rendering resolution, so the full-frame terms barely see it)."""
    closed_mouth_box: float = 0.0
    """L1 of the super-resolved RGB inside the mouth box (`mouth_box`'s term) with each frame's errors weighted by
    `geometry.lips.closed_share` of its tracked mouth's opening: the closed mouths, which obama's renders draw half
    open with white specks (docs/lip-motion.md "Run 41"), asked for once more. 0 = off; at 20 in one GPU pair (run
    42) obama's LMD 1.96 → 1.82 and its pauses' opening 1.35 → 1.16 of the truth's, sharpness 0.36 → 0.30."""
    eyes_box: float = 0.0
    """L1 of the super-resolved RGB inside the box around the brows and eyes at the output resolution
    (`data.dataset.eyes_boxes`; about 7 % of the frame): the upper face's own term, as `mouth_box` is the mouth's.
    macron_fr_50s's render draws lowered, smeared brows even on training frames where the truth raises them
    (docs/sharpness.md "The brows"). 0 = off."""
    laplacian: float = 0.0
    """L1 of the Laplacian-pyramid bands (3 octaves) of the super-resolved RGB (`losses.laplacian_l1`): detail
    weighted like the coarse image, which a blurred render cannot satisfy (issue 10; off until measured)."""
    adversarial: float = 0.0
    """Hinge generator term of a patch discriminator trained from scratch on crops inside the face and mouth boxes
    (`training.adversarial`, configured by `TrainConfig.adversarial`; the trainer adds it, as it adds `sync`):
    realistic texture where L1 settles for the blurred mean (issue 10; 0 with `feature_match` 0 builds no
    discriminator)."""
    feature_match: float = 0.0
    """L1 between the patch discriminator's hidden activations of the rendered crops and of the true crops at the
    same places, mean over its layers (pix2pixHD's feature matching; `training.adversarial`, from the same start as
    `adversarial`, which the trainer adds it beside): a perceptual distance learned from scratch, where the hinge
    term rewards any plausible texture (issue 10; 0 = off)."""
    lips: float = 1.0
    """Mean squared error of the audio encoder's lip vector against the tracked one (whitened units; lip mode)."""
    lpips: float = 1.0
    """LPIPS at both resolutions (only with user-given LPIPS weights)."""
    sync: float = 0.01
    """Lip-sync expert loss (only with user-given SyncNet weights)."""
    plane_tv: float = 0.01
    """Total variation of the identity planes (smooth where unseen)."""
    symmetry: float = 0.01
    """Left–right symmetry of the identity planes (plausible unseen cheek)."""
    delta_l1: float = 0.0
    """L1 of the deltaplane (sparsity; Talk3D uses none)."""
    delta_tv: float = 0.0
    """Total variation of the batch's deltaplane, mouth planes included: what the tokens add stays smooth at texel
    scale (edges allowed, grids not). The mouth planes are full-resolution blendshapes with nothing else keeping
    their texels smooth, and mixes the renderer was not taught with (snapped lip vectors) drew grids of white
    flecks over the teeth; at 0.05 the grid was gone (docs/lip-motion.md "Run 15"; 0 = off)."""
    closed_mouth_x: float = 0.0
    """Closed mouths without teeth (docs/lip-motion.md "Run 39"): on the batch's frames whose tracked mouth is closed
    (`geometry.lips.closed_share` of its opening), the xy plane's x-variation inside the mouth planes' footprint
    (`losses.masked_x_variation` of identity + deltaplane + mouth planes as the field reads them there). The
    closed mouths' white streaks are a pattern along x on that plane; 0 = off. Needs mouth planes on the xy plane.
    At 1 and at 30 (runs 40 and 41, obama_20s) it left the pause opening and the specks as they were, and at 30 it
    cost sharpness (0.59 → 0.49): it stays off."""
    face_depth: float = 10.0
    """Shift-invariant L1 (world units) between the rendered depth at the face-mesh vertices and the mesh's own
    relative depth: the face keeps its 3D shape where the video shows only near-frontal views."""
    depth_spread: float = 5.0
    """Mean variance of the ray termination depth (world units²): crisp surfaces instead of fog spread along the
    rays, which near-frontal views cannot tell apart but which smears views from the side. In plate mode only on
    the person's pixels: the backdrop's rays are to be empty, and sharpening their faint fog emptied the whole
    field (docs/background.md)."""
    background_depth: float = 1.0
    """Hinge pushing background pixels behind `TriplaneTalkerConfig.background_depth` (a backdrop behind the
    head, so novel views do not smear it over the face). Whole-frame mode only: with a plate those rays are to be
    empty (`alpha`), and an empty ray has no depth to push."""
    alpha: float = 10.0
    """Plate mode: binary cross-entropy of the rendered opacity against the person mask, so that the field leaves
    the background to the plate instead of painting over the plate's small errors (the RGB L1 terms gain up to
    16·|colour error| per unit of opacity there)."""
    novel_depth: float = 0.0
    """Pseudo multi-view depth (docs/novel-views.md): each frame's face-mesh vertices, lifted to world points with the
    rendered face's own distance, are seen from a random novel camera (`TriplaneTalkerConfig.novel_view`: the frame's
    camera turned about the head by up to ±30° yaw, ±20° pitch); shift-invariant L1 (world units) between the
    distance rendered along each visible vertex's ray and the vertex's own distance. Shapes the head at angles the
    video never shows (issue 11); off by default (docs/novel-views.md "Run 27")."""
    novel_color: float = 0.0
    """Pseudo multi-view colour: L1 (rgb_raw units) between the colour rendered along a vertex's novel ray and the
    vertex's colour in the frame, over vertices both cameras see (Lambertian: both views see the same surface
    point) and away from the eyes and the mouth opening, whose vertices sit on moving edges (`FrameBatch.
    face_point_colour`). Stops the novel view from showing a ghost of the frontal face; 4 in the `fast` preset
    (BENCHMARKS.md run 31)."""
    solid: float = 0.0
    """Solid body (docs/novel-views.md "A solid head"): at points a little behind the rendered surface of the
    person's opaque pixels (`TriplaneTalkerConfig.solid`), the field's transparency over one coarse sampling
    interval plus the L1 of its colour against the pixel's, so that side views meet the head's matter, coloured as
    its surface, instead of running past a relief onto the backdrop (5 in the `fast` preset, BENCHMARKS.md run 11)."""
    behind: float = 0.0
    """Empty behind the body (docs/novel-views.md "Where the ghost is"): at points between `SolidConfig.body_depth`
    behind the rendered surface of the person's opaque pixels and the backdrop, the field's opacity over one coarse
    sampling interval. No frame sees there (the surface hides it). On the CPU it ends the body 0.4–0.5 behind the
    face and gains frontal PSNR, but side views lose faces; off until weighed on the GPU."""


@dataclass(frozen=True)
class TriplaneTalkerConfig:
    """Sizes of every part of the triplane talker. The defaults are Talk3D's (the `full` preset)."""

    plane_channels: int = 32
    plane_resolution: int = 256
    identity_scale: Literal[1, 2] = 1
    """The identity planes at `identity_scale` × `plane_resolution` texels a side (2: four times the texels, an
    option). The deltaplane, the mouth planes and the torso stay at `plane_resolution`: the deltaplane is upsampled
    bilinearly to the identity's size before the two are added, and the predictor reads the identity
    average-pooled to its own. At 256² a texel of the planes spans 2.9 output pixels at the face, which leaves a
    field that can draw about a sixth of the truth's finest detail (docs/sharpness.md "What the planes can hold")."""
    render_resolution: int = 128
    """Neural-rendering resolution (rays per side); the super-resolution outputs `superres.scale` × this (4×)."""
    box_warp: float = 1.0
    identity_init_std: float = 0.1
    """Std of the random initial identity planes."""
    background_depth: float = 3.1
    """Where the backdrop is: in whole-frame mode the ray depth that background pixels are pushed behind (the head
    box ends at about 3.2 on the central ray); in plate mode the camera depth of the plate's plane in front of the
    plate's camera, which sets the parallax novel views see."""
    background: Literal["field", "plate", "fill"] = "field"
    """What draws the background: "field" = the triplane volume renders the whole frame (Talk3D); "plate" = it
    renders head and torso only, composited over a static plate recovered from the training frames
    (`data.background`), so that novel views show the backdrop, with parallax, instead of what the field guesses.
    In plate mode the field is also empty outside the triplane's box (`fields.triplane.empty_outside_box`): the
    person lies inside it, and outside it the zero-padded planes extrude matter where no near-frontal frame looks
    and side views do (docs/novel-views.md "Where the ghost is"). The whole frame keeps EG3D's field, whose
    backdrop reaches past the box. "fill" = the whole frame's field and losses, empty outside the box and
    composited over the plate as in plate mode: the field draws what it sees in the frames, backdrop included, and
    the plate shows only where it leaves a ray empty, as it does beside the head at side views (docs/novel-views.md
    "Run 24"; on the GPU, run 25, a cleaner frontal frame and backdrop, the head's side views no better)."""
    ray_chunk: int = 1 << 15
    """Rays rendered at once (memory bound; does not change results)."""
    volume: VolumeRenderConfig = field(default_factory=VolumeRenderConfig)
    decoder: OSGDecoderConfig = field(default_factory=OSGDecoderConfig)
    superres: SuperResolutionConfig = field(default_factory=SuperResolutionConfig)
    deltaplane: DeltaplaneConfig = field(default_factory=DeltaplaneConfig)
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    conditions: ConditionEncoderConfig = field(default_factory=ConditionEncoderConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    audio_token: Literal["audio", "lips"] = "audio"
    """What the audio token carries: "audio" = the audio encoder's code (Talk3D); "lips" = a lip vector, the
    tracked mouth shape in training and the audio encoder's regression of it at inference (`fields.lips`)."""
    lips: LipConfig = field(default_factory=LipConfig)
    """The lip vector (with audio_token="lips")."""
    novel_view: NovelViewConfig = field(default_factory=NovelViewConfig)
    """The novel cameras and vertex visibility of the pseudo multi-view terms (`LossWeights.novel_depth`,
    `LossWeights.novel_color`)."""
    solid: SolidConfig = field(default_factory=SolidConfig)
    """Where the solid-body term (`LossWeights.solid`) asks for density."""
    head_proxy: bool = False
    """The face-depth term and the pseudo multi-view terms also use the head proxy's points (`geometry.head_proxy`:
    hair and ears on an ellipsoid fitted to the head's silhouette), so that side views meet a round head instead
    of the face's card, cut off at the far eye (docs/novel-views.md "The head proxy"); the trainer loads them
    (`load_clip(head_proxy=True)`). Off in the presets: on the GPU it let the detector find obama's yaw −30° face
    again (0.04 → 0.84 of the frames) but cost both clips' mouths 0.2–1.3 dB (BENCHMARKS.md run 32). In fill mode
    it brings back the face that fill alone loses there (0 of the frames in run 42; 0.72–0.96 with the proxy, runs
    46–47), and against the whole-frame preset it cost the mouth 0.9 dB (obama) and 1.6 dB (macron, run 47)."""
    head_proxy_apart: Literal["none", "centring", "planes"] = "none"
    """How far the head proxy's points (with `head_proxy`) stay apart from the face mesh's. "none": the depth terms
    centre mesh and head points together, and their rays march the planes that render the frame (runs 32 and 42,
    which cost the mouth 1.3–1.4 dB). "centring": the mesh is centred on itself, as without the proxy, and the head
    points are measured from the mesh's mean, so that the crude ellipsoid's errors do not move the centre every
    vertex (the lips' too) is measured from; in the frame's own view the head points march rays of their own
    (`head_apart_depth_error`); on the GPU it gave the mouth back (+0.85 dB) and lost the turned face (0.96 → 0.64
    of obama's yaw −30° frames, BENCHMARKS.md run 46). "planes": that, and their rays teach the identity planes
    only (the deltaplane, which draws the mouth, detached there)."""
    torso_follow: tuple[float, float] | None = None
    """A torso of its own (None: off): a second, static triplane whose features add to the head's before the
    decoder, looked up in the frame of a torso that turns by these shares of the head's tracked (yaw, pitch)
    (`geometry.cameras.torso_frame`, from the `angles` token, which novel views replay). Through the head's camera
    alone the torso must sit at the chin's depth to hold still, where the jaw's matter draws over the collar
    (docs/novel-views.md "What a torso of its own would have to follow": it follows 0.5–0.7 of the pitch and
    0.05–0.17 of the yaw). With the angle tokens dropped (`TrainConfig.token_dropout`) it follows the neutral
    angles."""
    mouth_planes: int = 0
    """K full-resolution planes (3 × C channels, stored only where `mouth_box` reaches), mixed by a linear map of the
    audio token and added to the deltaplane (0 = off). The deltaplane hears the tokens only in its 32² bottleneck,
    so what the audio changes there is smooth at the scale of the lips; these planes let the audio move texels at
    plane resolution, as a set of learned blendshapes."""
    mouth_box: tuple[float, float, float, float, float, float] | None = (-0.1, 0.1, -0.2, -0.02, 0.0, 0.35)
    """(x0, x1, y0, y1, z0, z1) in world units: the mouth planes act only inside this box around the canonical
    mouth and jaw (docs/conventions.md: the face template's mouth corners sit at (±0.04, −0.075, 0.2), its chin at
    y = −0.16), fading out over `MOUTH_BOX_EDGE`; None lets them act everywhere. Without it the audio can also
    change the background and torso, which costs held-out PSNR."""
    mouth_planes_on: tuple[int, ...] = (0, 1, 2)
    """The planes that hold mouth planes (`fields.triplane.PLANE_AXES`: 0 = xy, 1 = xz, 2 = zy). A plane's texels
    reach every point that projects onto them, so a mouth plane on the xy plane acts in the prism of the box's
    (x, y) over all depths, and one on the xz plane in the prism of its (x, z) at every height: down the chin, the
    collar and the tie (docs/background.md "Where the torso moves"). Leaving out plane 1 keeps the audio above the
    mouth box's lower edge."""
    mouth_confined: bool = False
    """The mouth planes act only inside the 3D `mouth_box`: they travel as a second set of C plane channels, and each
    sampled point weights that set by its box weight (`fields.triplane.confine_to_box`), so no plane carries them
    along its missing axis (`mouth_planes_on` only chooses which of those prisms to accept). Without it the zy
    plane's mouth planes draw a line across the whole face at the lip's height (docs/lip-motion.md "Run 15");
    confined, that line ends at the box, and the xz plane's draw one down the midline from lip to chin (run 16):
    within the box each plane still acts along its missing axis. Costs a lookup of the second set on every plane
    in `mouth_planes_on`, also in the fast path's Triton kernel (all three planes, run 16: 27–30 % fewer training
    steps a minute, fast path 208 against 254 frames/s; on the xy plane alone 245). Needs `mouth_planes` and
    `mouth_box`."""
    audio_in_mouth_box: bool = False
    """The audio token reaches only the mouth planes (which act inside `mouth_box`); the deltaplane predictor sees
    a zero audio token, so only what the mouth planes reach moves with the audio (`mouth_planes_on`). Without it the
    lip vector can move anything through the deltaplane; on the CPU that was a small part of what moves the torso
    in plate mode (docs/background.md "Where the torso moves"). Needs `mouth_planes` and `mouth_box`."""
    mouth_x_blur: float = 0.0
    """Rendering only (not while training): σ in plane texels of a Gaussian along world x that blurs the xy
    plane's features (identity, deltaplane and mouth planes) inside the footprint of `mouth_box` (0 = off;
    `fields.triplane.blur_along_x`). The white specks that trained models draw between closed lips are that plane's
    x-variation (docs/lip-motion.md "Run 39"); blurring it at σ 2 from the same weights lowered obama_20s's mouth
    LMD in all seven arms measured (2.03–2.21 → 1.68–1.92) with the detail gains up and the face's sharpness
    0.01–0.09 lower, but it also takes the teeth out of open mouths (docs/lip-motion.md "Run 40"), and on
    macron_fr_50s, whose closed mouths have no specks, it raised LMD (run 41). Stored with the run and set again at
    rendering time (`deltaplane render --mouth-x-blur`). Needs `mouth_box`."""
    isolate_lower_face: int | None = None
    """In training, the identity planes get no gradient from the rays of the lower-face mask dilated by this many
    rendering pixels (None = off), so only the deltaplane, i.e. the tokens, can explain what the mouth does. Without
    it the static scene learns each training frame's mouth as seen from that frame's camera (docs/lip-motion.md),
    which leaves the audio little to explain and makes new audio replay the training mouths."""

    @property
    def output_resolution(self) -> int:
        return self.superres.scale * self.render_resolution

    @property
    def uses_plate(self) -> bool:
        """Composited over the background plate, with the field empty outside the box ("plate" and "fill")."""
        return self.background != "field"

    def __post_init__(self) -> None:
        if self.superres.input_resolution != self.render_resolution:
            raise ValueError("superres.input_resolution must equal render_resolution")
        if self.decoder.feature_channels != self.plane_channels:
            raise ValueError("decoder.feature_channels must equal plane_channels")
        if not self.mouth_planes_on or not set(self.mouth_planes_on) <= {0, 1, 2}:
            raise ValueError(f"mouth_planes_on must name planes among 0, 1, 2, got {self.mouth_planes_on}")
        if self.mouth_confined and not (self.mouth_planes and self.mouth_box is not None):
            raise ValueError("mouth_confined needs mouth_planes > 0 and a mouth_box (where they are confined)")
        if self.audio_in_mouth_box and not (self.mouth_planes and self.mouth_box is not None):
            raise ValueError("audio_in_mouth_box needs mouth_planes > 0 and a mouth_box (the audio's only way in)")
        if self.mouth_x_blur < 0 or (self.mouth_x_blur > 0 and self.mouth_box is None):
            raise ValueError("mouth_x_blur must be ≥ 0 and needs a mouth_box (where it blurs); "
                             f"got {self.mouth_x_blur}")
        if self.identity_scale not in (1, 2):
            raise ValueError(f"identity_scale must be 1 or 2, got {self.identity_scale}")
        if self.head_proxy_apart != "none" and not self.head_proxy:
            raise ValueError("head_proxy_apart sets the head proxy's points apart: it needs head_proxy")
        if self.loss.closed_mouth_x > 0 and not (self.mouth_planes and self.mouth_box is not None
                                                 and 0 in self.mouth_planes_on):
            raise ValueError("loss.closed_mouth_x needs mouth planes on the xy plane (mouth_planes > 0, a mouth_box "
                             "and 0 in mouth_planes_on): it acts on their footprint")


MOUTH_BOX_EDGE = 0.02
"""World units over which the mouth planes fade out at the faces of `TriplaneTalkerConfig.mouth_box`."""
TORSO_FOLLOW = (0.1, 0.6)
"""`TriplaneTalkerConfig.torso_follow` to try: the shoulders of the shared clips follow 0.05–0.17 of the tracked yaw
and 0.5–0.7 of the pitch (docs/novel-views.md "What a torso of its own would have to follow")."""


class TriplaneTalker(nn.Module):
    def __init__(self, config: TriplaneTalkerConfig) -> None:
        super().__init__()
        self.config = config
        shape = (3, config.plane_channels, config.plane_resolution, config.plane_resolution)
        identity_size = config.plane_resolution * config.identity_scale
        self.identity_planes = nn.Parameter(torch.randn(*shape[:2], identity_size, identity_size)
                                            * config.identity_init_std)
        if config.torso_follow is not None:
            self.torso_planes = nn.Parameter(torch.randn(shape) * config.identity_init_std)
        self.audio_encoder = AudioEncoder(config.audio)
        self.lips = (LipVector(config.lips, config.audio.code_dim, config.conditions.token_dim)
                     if config.audio_token == "lips" else None)
        # lip mode: the other regressions' audio encoders (`LipConfig.regressions`; none by default)
        self.more_audio_encoders = nn.ModuleList(
            AudioEncoder(config.audio) for _ in range(config.lips.regressions - 1 if self.lips is not None else 0))
        self.condition_encoder = ConditionEncoder(config.conditions)
        self.predictor = DeltaplanePredictor(config.deltaplane)
        with torch.device("cpu"):  # data of the config, also when the model is built on the meta device
            box = (None if config.mouth_box is None
                   else box_weights(config.mouth_box, config.plane_resolution, config.box_warp, MOUTH_BOX_EDGE))
        if box is not None:  # kept whatever `mouth_x_blur` is: rendering may switch it on; it blurs the full planes
            footprint = box if config.identity_scale == 1 else box_weights(config.mouth_box, identity_size,
                                                                           config.box_warp, MOUTH_BOX_EDGE)
            self.register_buffer("mouth_footprint", footprint[0, 0], persistent=False)
        if config.mouth_planes:
            mask = box if box is not None else torch.ones(3, 1, config.plane_resolution, config.plane_resolution)
            # Only the texels the box reaches are stored (~8 % of each plane for the default box: 16 MB instead of
            # 200 MB for 8 planes of the fast preset), and zero: the deltaplane stays exactly 0 at init.
            # planes left out store nothing (an empty rectangle) and add nothing
            self.mouth_rectangles = [rectangle if plane in config.mouth_planes_on else (0, 0, 0, 0)
                                     for plane, rectangle in enumerate(support_rectangles(mask))]
            self.mouth_planes = nn.ParameterList(
                nn.Parameter(torch.zeros(config.mouth_planes, config.plane_channels, r1 - r0, c1 - c0))
                for r0, r1, c0, c1 in self.mouth_rectangles)
            for plane, (r0, r1, c0, c1) in enumerate(self.mouth_rectangles):  # derived from the config
                self.register_buffer(f"mouth_mask_{plane}", mask[plane, :, r0:r1, c0:c1], persistent=False)
            self.mouth_mix = nn.Linear(config.conditions.token_dim, config.mouth_planes, bias=False)
        self.field = TriplaneField(config.decoder, box_warp=config.box_warp,
                                   empty_outside=config.uses_plate,
                                   confined=Confinement(config.mouth_box, MOUTH_BOX_EDGE, config.mouth_planes_on)
                                   if config.mouth_confined else None)
        self.superres = SuperResolution(config.superres)
        if config.uses_plate:  # saved with the weights, so render needs no dataset
            size = config.output_resolution
            self.register_buffer("plate", torch.zeros(3, size, size))
            self.register_buffer("plate_cam2world", orbit_cam2world(*torch.zeros(2)))
            self.register_buffer("plate_intrinsics", intrinsics_from_focal(DEFAULT_FOCAL, size, size)[0])

    @torch.no_grad()
    def load_background_plate(self, image: Float[Tensor, "3 H W"], camera: Cameras) -> None:
        """Set the plate (in [-1, 1]) and the camera it is seen from (`data.background.background_plate`)."""
        size = self.config.output_resolution
        if image.shape[-1] != size:
            image = F.interpolate(image[None].float(), size=(size, size), mode="bilinear", antialias=True)[0]
        self.plate.copy_(image)
        self.plate_cam2world.copy_(camera.cam2world[0])
        self.plate_intrinsics.copy_(camera.resized(size, size).intrinsics[0])

    def plate_image(self, cameras: Cameras, size: int, plate_warp: Float[Tensor, "B 2 3"] | None = None,
                    texture_size: int | None = None) -> Float[Tensor, "B 3 size size"]:
        """The plate as `cameras` see it at size² (`plate_coordinates`), from the texture area-averaged to
        `texture_size`² (None: size², a whole frame; a training window's is the whole frame's at its density)."""
        return self.plate_samples(self.plate_coordinates(cameras.resized(size, size), plate_warp), size,
                                  texture_size)

    def plate_coordinates(self, cameras: Cameras, plate_warp: Float[Tensor, "B 2 3"] | None = None
                          ) -> Float[Tensor, "B R 2"]:
        """(u, v) of the plate that each pixel of `cameras` shows: through its plane from the plate's camera, or,
        given the dataset frames' `plate_warp`, where those frames show it (`render.plate`)."""
        if plate_warp is None:
            origins, directions = pixel_rays(cameras)
            anchor = Cameras(self.plate_cam2world.expand(len(cameras), 4, 4),
                             self.plate_intrinsics.expand(len(cameras), 3, 3), *self.plate.shape[-2:])
            return plane_coordinates(origins, directions, anchor, self.config.background_depth)
        # the frame's own camera is the anchor: its pixels, moved as the aligned crop moved the backdrop
        return unwarp_coordinates(pixel_coordinates(cameras), plate_warp)

    def plate_samples(self, coordinates: Float[Tensor, "B R 2"], size: int, texture_size: int | None = None
                      ) -> Float[Tensor, "B 3 size size"]:
        """The plate at `coordinates` (rays row-major over size²), from the texture area-averaged to
        `texture_size`² (None: size²)."""
        texture, texture_size = self.plate[None], texture_size or size
        if texture_size != texture.shape[-1]:  # area: each pixel the mean of the texels it covers
            texture = F.interpolate(texture, size=(texture_size, texture_size), mode="area")
        return sample_plate(texture, coordinates, size, size)

    @torch.no_grad()
    def load_identity_planes(self, planes: Float[Tensor, "3 C H W"]) -> None:
        """Replace the identity planes, e.g. with the output of a personalised generator (planes at
        `plane_resolution` are upsampled bilinearly to an `identity_scale` 2 model's)."""
        if planes.shape[-1] * 2 == self.identity_planes.shape[-1]:
            planes = bilinear_upsample2x(planes)
        self.identity_planes.copy_(planes.to(self.identity_planes))

    def lip_regressions(self) -> list[tuple[AudioEncoder, nn.Linear]]:
        """The audio → lip vector regressions (lip mode only): audio encoder and head, `LipConfig.regressions` of
        them; the first is `audio_encoder` and `lips.head`."""
        assert self.lips is not None, "lip_regressions needs audio_token='lips'"
        return list(zip([self.audio_encoder, *self.more_audio_encoders], self.lips.heads))

    # The regressions run in fp32 under autocast too: taught in bf16 (the trainer's steps on CUDA) and read in fp32
    # (the prefit, evaluation and inference), a prefitted regression came apart (H100, scripts/lip_prefit_check.py:
    # obama's test lip correlation 0.23 after 1,200 such steps, 0.86 after fp32 ones; docs/lip-motion.md "Run 48").
    # Four small encoders a step: fp32 costs little.
    @full_precision
    def predicted_lips(self, audio: Float[Tensor, "B 8 16 D"], calibrated: bool = True) -> Float[Tensor, "B L"]:
        """The regressions' mean lip vector (lip mode only), `calibrated` as `fields.lips.LipVector.predict`."""
        raw = torch.stack([head(encoder(audio)) for encoder, head in self.lip_regressions()]).mean(0)
        return self.lips.calibrated(raw) if calibrated else raw

    @full_precision
    def lip_regression_error(self, frames: Sequence[LipFrames]) -> Tensor:
        """Mean squared error (whitened units) of each regression's lip vectors against the tracked ones, over the
        frames outside the calibration blocks, which the gain is fitted on; regression k learns from `frames[k]`
        (one entry: all from the same frames). Each regression learns on its own; their mean drives the mouth."""
        regressions = self.lip_regressions()
        frames = list(frames) * len(regressions) if len(frames) == 1 else list(frames)
        if len(frames) != len(regressions):
            raise ValueError(f"{len(frames)} sets of lip frames for {len(regressions)} regressions")
        errors = []
        for (encoder, head), part in zip(regressions, frames):
            target = self.lips.coefficients(part.mouth_shape)
            fitted = (~self.lips.held_out(part.indices)).float()
            error = (head(encoder(part.audio)) - target).square().mean(-1)
            errors.append((error * fitted).sum() / fitted.sum().clamp_min(1))
        return torch.stack(errors).mean()

    def audio_codes(self, audio: Float[Tensor, "B 8 16 D"]) -> Float[Tensor, "B 64"]:
        """The audio token's content driven by audio: the audio code, or in lip mode the predicted lip vector's."""
        return self.audio_encoder(audio) if self.lips is None else self.lips(self.predicted_lips(audio))

    def clip_audio_codes(self, audio: Float[Tensor, "frames 8 16 D"], chunk: int = 64) -> Float[Tensor, "frames 64"]:
        """`audio_codes` of a whole driving clip (on the CPU or the model's device; encoded `chunk` frames at a
        time): in lip mode those of `clip_lip_vectors`."""
        if self.lips is not None:
            return self.lips(self.clip_lip_vectors(audio, chunk))
        device = self.identity_planes.device
        return torch.cat([self.audio_encoder(audio[start:start + chunk].to(device))
                          for start in range(0, audio.shape[0], chunk)])

    def clip_lip_vectors(self, audio: Float[Tensor, "frames 8 16 D"], chunk: int = 64) -> Float[Tensor, "frames L"]:
        """Lip mode: the lip vectors that drive a whole clip (`predicted_lips` `chunk` frames at a time, with the
        clip's own gain, `fields.lips.LipVector.utterance_gain`, times `LipConfig.mouth_scale`, the training range
        and the snap)."""
        device = self.identity_planes.device
        raw = torch.cat([self.predicted_lips(audio[start:start + chunk].to(device), calibrated=False)
                         for start in range(0, audio.shape[0], chunk)])
        return self.lips.calibrated(raw, self.lips.utterance_gain(raw) * self.lips.config.mouth_scale)

    def tokens(self, conditions: Conditions, audio_code: Float[Tensor, "B 64"] | None = None,
               mouth_shape: Float[Tensor, "B 40"] | None = None, audio_driven: Bool[Tensor, " B"] | None = None
               ) -> Float[Tensor, "B 5 64"]:
        """The 5 condition tokens; pass `audio_code` to override the audio (e.g. a smoothed code). In lip mode a
        tracked `mouth_shape` (training) replaces the audio: its lip vector as taught (`LipVector.taught`), except
        on the `audio_driven` frames, which take the audio's lip vector as inference does (calibrated and snapped,
        no teacher noise; no gradient into the regressions): scheduled sampling, `TrainConfig.lip_sampling`."""
        if audio_code is None and mouth_shape is not None and self.lips is not None:
            lips = self.lips.taught(self.lips.coefficients(mouth_shape))  # every frame: one random stream
            if audio_driven is not None:
                with torch.no_grad():
                    predicted = self.predicted_lips(conditions.audio)
                lips = torch.where(audio_driven[:, None], predicted.to(lips.dtype), lips)
            audio_code = self.lips(lips)
        elif audio_code is None:
            audio_code = self.audio_codes(conditions.audio)
        return self.condition_encoder(audio_code, conditions.eye, conditions.angles, conditions.landmarks)

    def planes(self, tokens: Float[Tensor, "B 5 64"], encoded_identity: object | None = None
               ) -> tuple[Float[Tensor, "B 3 C H W"], Float[Tensor, "B 3 C H W"]]:
        """(identity + deltaplane, deltaplane). `encoded_identity` is a cached `encode_identity` result. With
        `mouth_confined` both carry 2C channels, the mouth planes in the second C (`with_identity`). Outside
        training the first gets `mouth_x_blur`."""
        if encoded_identity is None:
            encoded_identity = self.encode_identity(tokens.shape[0])
        delta = self.predictor.decode(encoded_identity, self.heard(tokens))
        if self.config.mouth_planes:
            mouth = self.mouth_delta(self.mouth_mix(tokens[:, 0])).to(delta.dtype)  # mixed by the audio token
            delta = torch.cat((delta, mouth), dim=2) if self.config.mouth_confined else delta + mouth
        full = self.with_identity(delta)
        if self.config.mouth_x_blur > 0 and not self.training:  # σ in the deltaplane's texels
            full = blur_along_x(full, 0, self.mouth_footprint, self.config.mouth_x_blur * self.config.identity_scale)
        return full, delta

    def coarse_identity(self) -> Float[Tensor, "3 C R R"]:
        """The identity planes at the deltaplane's `plane_resolution` (average-pooled with `identity_scale` 2)."""
        if self.config.identity_scale == 1:
            return self.identity_planes
        return F.avg_pool2d(self.identity_planes, self.config.identity_scale)

    def encode_identity(self, batch: int = 1) -> object:
        """The predictor's encoding of the identity planes (at its own resolution) for `batch` frames, which
        `planes(encoded_identity=...)` reuses while the weights stay the same."""
        return self.predictor.encode(self.coarse_identity()[None].expand(batch, -1, -1, -1, -1))

    def with_identity(self, delta: Float[Tensor, "B 3 D R R"]) -> Float[Tensor, "B 3 D H W"]:
        """The planes that `delta` (of `planes`) renders: the identity planes added to its first C channels; the
        mouth planes of `mouth_confined` (channels C to 2C) stay apart for the field to confine. With
        `identity_scale` 2 the deltaplane is upsampled ×2 (bilinear, texel centres as the field samples them)."""
        identity = self.identity_planes[None]
        delta = delta.to(identity.dtype)
        if delta.shape[-1] != identity.shape[-1]:
            delta = bilinear_upsample2x(delta.flatten(0, 1)).unflatten(0, delta.shape[:2])
        channels = identity.shape[2]
        if delta.shape[2] == channels:
            return identity + delta
        return torch.cat((identity + delta[:, :, :channels], delta[:, :, channels:]), dim=2)

    def heard(self, tokens: Float[Tensor, "B 5 64"]) -> Float[Tensor, "B 5 64"]:
        """The tokens the deltaplane predictor attends to: all five, or with `audio_in_mouth_box` the audio token
        zeroed (key and value 0: the audio reaches the planes only through the mouth planes)."""
        if not self.config.audio_in_mouth_box:
            return tokens
        return torch.cat((torch.zeros_like(tokens[:, :1]), tokens[:, 1:]), dim=1)

    def mouth_delta(self, weights: Float[Tensor, "B K"]) -> Float[Tensor, "B 3 C H W"]:
        """The mouth planes mixed by `weights`, inside the mouth box, zero elsewhere on the full planes."""
        size = self.config.plane_resolution
        planes = []
        for plane, (r0, r1, c0, c1) in enumerate(self.mouth_rectangles):
            stored = self.mouth_planes[plane]
            # masking the B mixed planes, not the K stored ones: less work whenever B < K
            mask = getattr(self, f"mouth_mask_{plane}")
            mixed = torch.einsum("bk,kchw->bchw", weights.to(stored.dtype), stored) * mask
            planes.append(F.pad(mixed, (c0, size - c1, r0, size - r1)))
        return torch.stack(planes, dim=1)

    def render(self, planes: Float[Tensor, "B 3 C H W"], cameras: Cameras,
               generator: torch.Generator | None = None, isolated: Bool[Tensor, "B 1 r r"] | None = None,
               plate_warp: Float[Tensor, "B 2 3"] | None = None, torso: Float[Tensor, "B 4 4"] | None = None,
               rays: int | None = None) -> RenderOutput:
        """Volume-render the feature image at the rendering resolution and super-resolve it. The identity planes
        get no gradient from the `isolated` rays (`TriplaneTalkerConfig.isolate_lower_face`). In plate mode both
        resolutions are composited over the plate (`plate_image`; `plate_warp` for dataset frames). `torso`: the
        frames' `torso_transforms` (with `torso_follow`). `rays`: rays per side for `cameras` (None: the rendering
        resolution; a training window's cameras, `Cameras.window`, take fewer at the same density)."""
        size = rays or self.config.render_resolution
        origins, directions = pixel_rays(cameras.resized(size, size))  # [B, R, 3]
        batch = origins.shape[0]
        ray_mask = None if isolated is None else isolated.reshape(batch, -1)  # [B, R], row-major
        features, depth, accumulation, spread = self._march(planes, origins, directions, ray_mask, generator, torso)
        feature_image = features.permute(0, 2, 1).reshape(batch, -1, size, size) * 2.0 - 1.0  # EG3D: [0,1] → [-1,1]

        def image(values: Tensor) -> Tensor:  # [B, R, 1] → [B, 1, size, size]
            return values.permute(0, 2, 1).reshape(batch, 1, size, size)

        alpha = image(accumulation)
        if self.config.uses_plate:  # the SR sees the plate in its input RGB: its features for the backdrop
            plate = self.plate_image(cameras, size, plate_warp, self.config.render_resolution)
            feature_image = over_plate(feature_image, alpha, plate)
        rgb_raw = feature_image[:, :3]
        rgb = self.superres(rgb_raw, feature_image)
        if self.config.uses_plate:
            plate = self.plate_image(cameras, rgb.shape[-1], plate_warp, self.config.output_resolution)
            rgb = blend_plate(rgb, alpha, plate)
        return RenderOutput(rgb=rgb, rgb_raw=rgb_raw, depth=image(depth), accumulation=alpha,
                            depth_spread=image(spread))

    def _march(self, planes: Float[Tensor, "B 3 C H W"], origins: Float[Tensor, "B R 3"],
               directions: Float[Tensor, "B R 3"], ray_mask: Bool[Tensor, "B R"] | None = None,
               generator: torch.Generator | None = None, torso: Float[Tensor, "B 4 4"] | None = None
               ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """`render_rays` in chunks of `ray_chunk` rays: (features, depth, accumulation, spread), each [B, R, ·]. The
        identity planes get no gradient from the rays where `ray_mask` is set."""
        identity = self.identity_planes[None].expand(origins.shape[0], -1, -1, -1, -1)
        mask = None if ray_mask is None else ray_mask.to(planes.dtype)

        def field(points: Tensor, start: int, stop: int) -> tuple[Tensor, Tensor]:
            if mask is None:
                return self._field(planes, points, torso)
            rays = mask[:, start:stop]
            samples = points.shape[1] // rays.shape[1]  # render_rays orders points ray-major
            return self._field(planes, points, torso, (identity, rays.repeat_interleave(samples, dim=1)))

        volume = self.config.volume.sampling(self.training)
        chunks = []
        for start in range(0, origins.shape[1], self.config.ray_chunk):
            stop = start + self.config.ray_chunk
            chunks.append(render_rays(lambda points: field(points, start, stop), origins[:, start:stop],
                                      directions[:, start:stop], volume, generator=generator))
        return tuple(torch.cat([getattr(c, name) for c in chunks], dim=1)  # type: ignore[return-value]
                     for name in ("features", "depth", "accumulation", "spread"))

    def _field(self, planes: Float[Tensor, "B 3 C H W"], points: Float[Tensor, "B N 3"],
               torso: Float[Tensor, "B 4 4"] | None,
               stopped: tuple[Float[Tensor, "B 3 C H W"], Bool[Tensor, "B N"]] | None = None
               ) -> tuple[Float[Tensor, "B N F"], Float[Tensor, "B N 1"]]:
        """`self.field` at the world points, with the torso's planes added at the torso's points
        (`TriplaneTalkerConfig.torso_follow`; `torso`: the frames' `torso_transforms`)."""
        if self.config.torso_follow is None:
            return self.field(planes, points, stopped)
        if torso is None:
            raise ValueError("a model with torso_follow renders with the frames' torso transforms "
                             "(TriplaneTalker.torso_transforms of their angle tokens)")
        moved = transform_points(torso, points)
        # one plane set for every frame: the batch's points looked up as one frame's (no per-frame copy of the planes)
        added = sample_triplane(self.torso_planes[None], moved.reshape(1, -1, 3), self.config.box_warp)
        return self.field(planes, points, stopped, added.reshape(*points.shape[:2], -1))

    def torso_transforms(self, angles: Float[Tensor, "B 3"]) -> Float[Tensor, "B 4 4"] | None:
        """World → torso frame per frame, from the frames' tracked angles (the `angles` token); None without
        `TriplaneTalkerConfig.torso_follow`."""
        if self.config.torso_follow is None:
            return None
        return torso_frame(angles.float(), self.config.torso_follow)  # fp32 under autocast: linalg.inv has no bf16

    def _isolated(self, lower_face: Bool[Tensor, "B 1 r r"] | None) -> Bool[Tensor, "B 1 r r"] | None:
        """The rays `TriplaneTalkerConfig.isolate_lower_face` isolates: the lower-face mask dilated (None = off)."""
        if lower_face is None or self.config.isolate_lower_face is None:
            return None
        radius = self.config.isolate_lower_face
        return F.max_pool2d(lower_face.float(), 2 * radius + 1, stride=1, padding=radius) > 0

    def forward(self, cameras: Cameras, conditions: Conditions, generator: torch.Generator | None = None,
                mouth_shape: Float[Tensor, "B 40"] | None = None, lower_face: Bool[Tensor, "B 1 r r"] | None = None,
                plate_warp: Float[Tensor, "B 2 3"] | None = None, audio_driven: Bool[Tensor, " B"] | None = None,
                rays: int | None = None) -> tuple[RenderOutput, Float[Tensor, "B 3 C H W"]]:
        """Render; `mouth_shape` teaches the lip mode's renderer with tracked mouths, but on `audio_driven` frames
        (see `tokens`); `lower_face` (training) is the mask that `TriplaneTalkerConfig.isolate_lower_face` dilates
        and isolates; `plate_warp` (dataset frames, plate mode) places the plate where those frames show the
        backdrop; `rays` per side of a training window (`render`)."""
        planes, delta = self.planes(self.tokens(conditions, mouth_shape=mouth_shape, audio_driven=audio_driven))
        return self.render(planes, cameras, generator, self._isolated(lower_face), plate_warp,
                           self.torso_transforms(conditions.angles), rays), delta

    def loss_terms(self, output: RenderOutput, delta: Float[Tensor, "B 3 C H W"], batch: FrameBatch,
                   perceptual: nn.Module | None = None, generator: torch.Generator | None = None,
                   lip_frames: Sequence[LipFrames] | None = None) -> dict[str, Tensor]:
        """Named weighted terms; their sum is the training loss. `generator` (CPU) draws the novel cameras of the
        pseudo multi-view terms (None: torch's global generator); `lip_frames` are the lip regressions' frames, one
        set per regression or one for all (`TrainConfig.lip_batch`; None: the batch's own)."""
        weights = self.config.loss
        terms = {
            "l1_raw": weights.l1_raw * losses.l1(output.rgb_raw, batch.images_raw),
            "l1_sr": weights.l1_sr * losses.l1(output.rgb, batch.images),
            "mouth": weights.mouth * losses.masked_mse(output.rgb_raw, batch.images_raw, batch.lower_face),
            "plane_tv": weights.plane_tv * losses.plane_total_variation(self.identity_planes[None]),
            "symmetry": weights.symmetry * losses.plane_symmetry(self.identity_planes[None]),
        }
        apart = self.config.head_proxy_apart  # `static`: the planes the head proxy's rays march when set apart
        static = None if apart == "none" else self.with_identity(delta.detach() if apart == "planes" else delta)
        if weights.face_depth > 0:
            count = self._prior_points(batch)
            terms["face_depth"] = weights.face_depth * (self.face_depth_error(output, batch, count) if static is None
                                                        else self.head_apart_depth_error(static, output, batch))
        if weights.depth_spread > 0:
            spread = output.depth_spread.float()
            if self.config.background == "plate":
                spread = spread * batch.person
            terms["depth_spread"] = weights.depth_spread * spread.mean()
        if self.config.background == "plate":
            terms["alpha"] = weights.alpha * losses.opacity_bce(output.accumulation, batch.person)
        elif weights.background_depth > 0:
            behind = torch.relu(self.config.background_depth - output.depth.float())
            terms["background_depth"] = weights.background_depth * losses.masked_mean(behind, batch.background)
        if weights.laplacian > 0:
            terms["laplacian"] = weights.laplacian * losses.laplacian_l1(output.rgb, batch.images)
        if weights.mouth_box > 0:
            terms["mouth_box"] = weights.mouth_box * losses.masked_l1(output.rgb, batch.images, batch.mouth_box)
        if weights.eyes_box > 0:
            terms["eyes_box"] = weights.eyes_box * losses.masked_l1(output.rgb, batch.images, batch.eyes_box)
        if weights.closed_mouth_box > 0:
            closed = closed_share(shape_opening(batch.mouth_shape.float()))
            terms["closed_mouth_box"] = weights.closed_mouth_box * losses.masked_l1(output.rgb, batch.images,
                                                                                  batch.mouth_box, closed)
        if self.lips is not None:
            frames = lip_frames or [LipFrames(batch.indices, batch.conditions.audio, batch.mouth_shape)]
            terms["lips"] = weights.lips * self.lip_regression_error(frames)
        if weights.novel_depth > 0 or weights.novel_color > 0 or weights.solid > 0 or weights.behind > 0:
            planes = static if apart == "centring" else self.with_identity(delta)  # those `forward` rendered
            terms.update(self.novel_view_terms(planes, output, batch, generator, static))
            if weights.solid > 0:
                terms["solid"] = weights.solid * self.solid_term(planes, output, batch, generator)
            if weights.behind > 0:
                terms["behind"] = weights.behind * self.behind_term(planes, output, batch, generator)
        if weights.delta_l1 > 0:
            terms["delta_l1"] = weights.delta_l1 * delta.float().abs().mean()
        if weights.delta_tv > 0:
            terms["delta_tv"] = weights.delta_tv * losses.plane_total_variation(delta)
        if weights.closed_mouth_x > 0:
            terms["closed_mouth_x"] = weights.closed_mouth_x * self.closed_mouth_x_variation(delta, batch.mouth_shape)
        if perceptual is not None:
            terms["lpips"] = weights.lpips * (perceptual(output.rgb_raw, batch.images_raw).mean()
                                              + perceptual(output.rgb, batch.images).mean())
        return terms

    def closed_mouth_x_variation(self, delta: Float[Tensor, "B 3 D H W"], mouth_shape: Float[Tensor, "B 40"]
                                 ) -> Float[Tensor, ""]:
        """`LossWeights.closed_mouth_x` unweighted: the x-variation of the xy plane's features, as the field reads
        them inside the mouth box (the identity plane, the deltaplane and, confined or not, the mouth planes: all
        that a point in the box gets from that plane), over the mouth planes' footprint, for the frames
        `closed_share` of their tracked `mouth_shape` counts closed."""
        r0, r1, c0, c1 = self.mouth_rectangles[0]
        channels = self.identity_planes.shape[1]
        xy = delta[:, 0, :, r0:r1, c0:c1].float()
        features = self.coarse_identity()[0, :, r0:r1, c0:c1] + xy[:, :channels]
        if xy.shape[1] > channels:  # the confined mouth planes, which count fully inside the box
            features = features + xy[:, channels:]
        closed = closed_share(shape_opening(mouth_shape.float()))
        return losses.masked_x_variation(features, self.mouth_mask_0[0], closed)

    def novel_view_terms(self, planes: Float[Tensor, "B 3 C H W"], output: RenderOutput, batch: FrameBatch,
                         generator: torch.Generator | None = None, static: Float[Tensor, "B 3 C H W"] | None = None
                         ) -> dict[str, Tensor]:
        """The pseudo multi-view terms (`LossWeights.novel_depth`, `novel_color`; docs/novel-views.md): one ray per
        face-mesh vertex from a random novel camera per frame, through `planes` (those that rendered `output`).
        `generator` (CPU) draws the cameras; both weights 0 → no terms and no work. `static`: the planes that the
        head proxy's rays march instead, with their depths measured from the mesh's (`head_proxy_apart`)."""
        weights, config = self.config.loss, self.config.novel_view
        if weights.novel_depth == 0 and weights.novel_color == 0:
            return {}
        count = self._prior_points(batch)
        cameras, valid, pixels = batch.cameras, batch.face_point_valid[:, :count], batch.face_points[:, :count, :2]
        # float32 geometry even under autocast: the z-buffer compares distances to within 1 %
        with torch.no_grad(), torch.autocast(planes.device.type, enabled=False):
            points = self._lifted_prior_points(output, batch, count, apart=static is not None)
            yaw, pitch = (angle.to(cameras.cam2world) for angle in random_offsets(len(cameras), config, generator))
            novel = Cameras(rotate_about_origin(cameras.cam2world, yaw, pitch), cameras.intrinsics,
                            cameras.height, cameras.width)
            # the colour term also needs what the frame's own camera sees: both z-buffers in one batch (~55
            # operations fewer a step; each row's z-buffer is its own)
            viewers = novel if weights.novel_color == 0 else Cameras(
                torch.cat((novel.cam2world, cameras.cam2world)), cameras.intrinsics.repeat(2, 1, 1), cameras.height,
                cameras.width)
            visible = visible_points(points.repeat(len(viewers) // len(points), 1, 1), viewers, config.cell,
                                     config.margin)
            seen = valid & visible[:len(points)]
            origins, directions, expected = point_rays(points, novel.cam2world)
            isolated = self._isolated(batch.lower_face)  # a vertex on an isolated source ray stays isolated
            ray_mask = None if isolated is None else sample_pixels(isolated, pixels, cameras.width)[:, 0] > 0
        torso = self.torso_transforms(batch.conditions.angles)
        if static is None or static is planes:  # one march; apart, the head's depths are still measured apart
            features, depth, _, _ = self._march(planes, origins, directions, ray_mask, torso=torso)
        else:  # the mesh's rays through `planes`, the head's through `static`
            n = FACE_VERTICES
            masks = (None, None) if ray_mask is None else (ray_mask[:, :n], ray_mask[:, n:])
            mesh = self._march(planes, origins[:, :n], directions[:, :n], masks[0], torso=torso)
            head = self._march(static, origins[:, n:], directions[:, n:], masks[1], torso=torso)
            features, depth = (torch.cat(pair, dim=1) for pair in zip(mesh[:2], head[:2]))
        terms = {}
        if weights.novel_depth > 0:
            if static is None:
                error = losses.relative_depth_l1(depth[..., 0], expected, seen)
            else:
                n = FACE_VERTICES
                error = self._pooled(losses.relative_depth_l1(depth[:, :n, 0], expected[:, :n], seen[:, :n]),
                                     self._head_from_mesh(depth[..., 0], expected, seen), seen)
            terms["novel_depth"] = weights.novel_depth * error
        if weights.novel_color > 0:
            with torch.no_grad(), torch.autocast(planes.device.type, enabled=False):
                target = sample_pixels(batch.images_raw, pixels, cameras.width)  # [B, 3, P], colour in the frame
                # the frame sees it too, and its colour there is the surface's (an eyelid's margin is lid one frame
                # and sclera the next: averaged, it paints pale flecks over the eyes and the lips)
                shown = seen & batch.face_point_colour[:, :count] & visible[len(points):]
            colour = features[..., :3].transpose(1, 2) * 2.0 - 1.0  # rgb_raw's convention, [B, 3, P]
            terms["novel_color"] = weights.novel_color * losses.masked_l1(colour[..., None], target[..., None],
                                                                          shown[:, None, :, None])
        return terms

    def solid_term(self, planes: Float[Tensor, "B 3 C H W"], output: RenderOutput, batch: FrameBatch,
                   generator: torch.Generator | None = None) -> Float[Tensor, ""]:
        """At `geometry.solid.interior_points` behind the rendered surface of the person's opaque pixels (`output`'s
        depth): the mean transparency of one coarse sampling interval δ, exp(−σ·δ), plus the mean L1 (rgb_raw units)
        of the colour there against the frame's colour at the pixel (a body has its surface's colour inside:
        otherwise side views show the unsupervised colours of the matter as noise). `generator` (CPU) draws the
        rays and points. Isolated rays (`isolate_lower_face`) give the identity planes no gradient, as in
        rendering."""
        config = self.config.solid
        with torch.no_grad(), torch.autocast(planes.device.type, enabled=False):
            origins, directions, depth, chosen, valid, along = self._surface_rays(output, batch, config.skip_mouth,
                                                                                  generator)
            points = interior_points(origins, directions, depth, chosen, along, config)
            colour = batch.images_raw.flatten(2).float().gather(2, chosen[:, None].expand(-1, 3, -1))  # [B, 3, K]
        features, optical = self._sample_optical_depth(planes, points, chosen, batch)
        error = (features[..., :3].float().transpose(1, 2) * 2.0 - 1.0 - colour).abs().mean(1)  # [B, K]
        return ((torch.exp(-optical) + error) * valid).sum() / valid.sum().clamp_min(1)

    def behind_term(self, planes: Float[Tensor, "B 3 C H W"], output: RenderOutput, batch: FrameBatch,
                    generator: torch.Generator | None = None) -> Float[Tensor, ""]:
        """At `geometry.solid.empty_points` (from `SolidConfig.body_depth` behind the rendered surface of the
        person's opaque pixels to the backdrop): the mean opacity of one coarse sampling interval, 1 − exp(−σ·δ).
        The backdrop starts at the rays' far end in plate mode and at `background_depth` in whole-frame mode."""
        config, volume = self.config.solid, self.config.volume
        limit = volume.far if self.config.background == "plate" else self.config.background_depth
        with torch.no_grad(), torch.autocast(planes.device.type, enabled=False):
            origins, directions, depth, chosen, valid, along = self._surface_rays(output, batch, False, generator)
            points, stretch = empty_points(origins, directions, depth, chosen, along, config, limit)
            valid &= stretch
        _, optical = self._sample_optical_depth(planes, points, chosen, batch)
        return (-torch.expm1(-optical) * valid).sum() / valid.sum().clamp_min(1)

    def _surface_rays(self, output: RenderOutput, batch: FrameBatch, skip_mouth: bool,
                      generator: torch.Generator | None):
        """Rays (at the rendering resolution) of `SolidConfig.rays` pixels drawn among the person's opaque ones
        (segmentation `person` ≥ 0.99, rendered opacity > 0.5; `skip_mouth`: not under the mouth box): origins,
        unit directions, rendered depths [B, R], the chosen rays [B, K], whether each is such a pixel, and one
        U(0, 1) number per chosen ray for placing its point. `generator` (CPU) draws them."""
        size = output.depth.shape[-1]  # the rendering resolution, or a training window's rays
        origins, directions = pixel_rays(batch.cameras.resized(size, size))
        opaque = (batch.person >= 0.99) & (output.accumulation > 0.5)
        if skip_mouth:  # the mouth box at the rendering resolution: any of its output pixels
            opaque &= F.adaptive_max_pool2d(batch.mouth_box.float(), size) == 0
        opaque = opaque.flatten(1)
        uniform = host_to_device(torch.rand(opaque.shape, generator=generator), opaque.device)
        chosen, valid = choose_rays(opaque, uniform, min(self.config.solid.rays, opaque.shape[1]))
        along = host_to_device(torch.rand(chosen.shape, generator=generator), opaque.device)
        return origins, directions, output.depth.flatten(1).float(), chosen, valid, along

    def _sample_optical_depth(self, planes: Float[Tensor, "B 3 C H W"], points: Float[Tensor, "B K 3"],
                              chosen: Int[Tensor, "B K"], batch: FrameBatch
                              ) -> tuple[Float[Tensor, "B K F"], Float[Tensor, "B K"]]:
        """The field's features at `points` on the `chosen` rays and σ·δ over one coarse sampling interval.
        Isolated rays (`isolate_lower_face`) give the identity planes no gradient, as in rendering."""
        volume = self.config.volume
        with torch.no_grad():
            isolated = self._isolated(batch.lower_face)
            stopped = None if isolated is None else (
                self.identity_planes[None].expand(len(points), -1, -1, -1, -1),
                isolated.flatten(1).gather(1, chosen).to(planes.dtype))
        features, density = self._field(planes, points, self.torso_transforms(batch.conditions.angles), stopped)
        interval = (volume.far - volume.near) / (volume.num_coarse - 1)
        return features, F.softplus(density[..., 0].float() + volume.density_bias) * interval

    def _prior_points(self, batch: FrameBatch) -> int | None:
        """How many of `batch`'s depth-prior points the terms use: the face mesh's, or all with `head_proxy`."""
        if not self.config.head_proxy:
            return FACE_VERTICES
        if batch.face_points.shape[1] == FACE_VERTICES:
            raise ValueError("head_proxy needs the head proxy's points: load the clip with load_clip(..., "
                             "head_proxy=True)")
        return None

    @staticmethod
    def face_depths(output: RenderOutput, batch: FrameBatch, count: int | None = FACE_VERTICES
                    ) -> tuple[Float[Tensor, "B P"], Float[Tensor, "B 1"]]:
        """Rendered camera depths at the first `count` depth-prior points (the face vertices; None: with the head
        proxy's), and their mean over the valid ones (detached): the face's distance that scales the relative
        depths (face_depth module docstring)."""
        cameras = batch.cameras
        depth = camera_depth(output.depth, batch.face_points[:, :count, :2], cameras.intrinsics, cameras.width)
        valid = batch.face_point_valid[:, :count]
        distance = ((depth * valid).sum(-1, keepdim=True) / valid.sum(-1, keepdim=True).clamp_min(1)).detach()
        return depth, distance

    @classmethod
    def face_depth_error(cls, output: RenderOutput, batch: FrameBatch, count: int | None = FACE_VERTICES
                         ) -> Float[Tensor, ""]:
        """`losses.relative_depth_l1` between rendered camera depths at the first `count` depth-prior points (the
        face vertices) and their relative depths scaled by the rendered face's own mean distance (`face_depths`)."""
        depth, distance = cls.face_depths(output, batch, count)
        return losses.relative_depth_l1(depth, batch.face_points[:, :count, 2] * distance,
                                        batch.face_point_valid[:, :count])

    def head_apart_depth_error(self, static: Float[Tensor, "B 3 C H W"], output: RenderOutput, batch: FrameBatch
                               ) -> Float[Tensor, ""]:
        """The face-depth term with the head proxy apart (`head_proxy_apart`): the mesh's part as
        `face_depth_error`; the head points' rays from the frame's camera marched through `static` (with "planes"
        the deltaplane detached in them), their distances measured from the mesh's mean rendered (`output`) and
        expected distances. Pooled over both sets' valid points, as the joint term is."""
        n, cameras, valid = FACE_VERTICES, batch.cameras, batch.face_point_valid
        with torch.no_grad(), torch.autocast(static.device.type, enabled=False):
            origins, directions, expected = point_rays(self._lifted_prior_points(output, batch, None, apart=True),
                                                       cameras.cam2world)
            rendered = sample_pixels(output.depth, batch.face_points[:, :n, :2], cameras.width)[:, 0]
        _, head, _, _ = self._march(static, origins[:, n:], directions[:, n:],
                                    torso=self.torso_transforms(batch.conditions.angles))
        distances = torch.cat((rendered, head[..., 0].float()), dim=1)
        return self._pooled(self.face_depth_error(output, batch), self._head_from_mesh(distances, expected, valid),
                            valid)

    def _lifted_prior_points(self, output: RenderOutput, batch: FrameBatch, count: int | None, apart: bool
                             ) -> Float[Tensor, "B P 3"]:
        """World points of the first `count` depth-prior points (None: all), at the rendered face's distance
        (`lift_face_points`); `apart`: the distance and the relative depths' centre are the mesh's alone."""
        points, valid = batch.face_points[:, :count].float(), batch.face_point_valid[:, :count]
        if apart:
            valid = torch.cat((valid[:, :FACE_VERTICES], torch.zeros_like(valid[:, FACE_VERTICES:])), dim=1)
        distance = self.face_depths(output, batch, FACE_VERTICES if apart else count)[1]
        return lift_face_points(points, valid, distance, batch.cameras)

    @staticmethod
    def _head_from_mesh(distances: Float[Tensor, "B P"], expected: Float[Tensor, "B P"], valid: Bool[Tensor, "B P"]
                        ) -> Float[Tensor, ""]:
        """L1 of the head points' distances (those after the mesh's) against the expected ones, each measured from
        the mesh's valid points' mean (the rendered one detached: the head does not move the face)."""
        n = FACE_VERTICES
        centres = (losses.row_mean(distances[:, :n].detach(), valid[:, :n]),
                   losses.row_mean(expected[:, :n], valid[:, :n]))
        return losses.offset_depth_l1(distances[:, n:], expected[:, n:], valid[:, n:], centres)

    @staticmethod
    def _pooled(mesh: Float[Tensor, ""], head: Float[Tensor, ""], valid: Bool[Tensor, "B P"]) -> Float[Tensor, ""]:
        """The mean over all valid points from the mesh's and the head's means (the joint term's weighting)."""
        counts = valid[:, :FACE_VERTICES].sum().float(), valid[:, FACE_VERTICES:].sum().float()
        return (mesh * counts[0] + head * counts[1]) / (counts[0] + counts[1]).clamp_min(1.0)
