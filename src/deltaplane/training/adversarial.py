"""The adversarial patch term (issue 10): a PatchGAN discriminator, trained from scratch beside the renderer, tells
crops of the rendered output from crops of the ground truth at the same places inside the face and mouth boxes.

L1 terms are minimised by the conditional mean, which is a blur wherever the renderer cannot place detail exactly;
the discriminator instead scores whether a crop *looks* like the real ones (pores, lip lines, eyelashes), as the
visual-quality discriminators of Wav2Lip, GeneFace++ and pix2pixHD do. Loss: hinge with a spectrally normalised
discriminator (`fields.discriminator`), SNGAN/BigGAN's stable pair. Each training step the renderer gets
`LossWeights.adversarial` × the generator's hinge term (after `AdversarialConfig.start`), then the discriminator takes
one Adam step on the same crops (from step 0, so it is already informed when the renderer starts listening).
`LossWeights.feature_match` adds pix2pixHD's feature matching from the same start: the renderer's crops are to
excite the discriminator's hidden layers as the true crops at the same places do, a perceptual distance learned
from scratch that asks for the truth's detail, where the hinge term asks only for plausible detail.

Checkpoints keep its weights, Adam moments and crop RNG in training_state.safetensors (`discriminator.*`,
`optim.discriminator.*`, `rng.crops`), so `--resume` continues it exactly; a checkpoint without them (an older run)
starts a fresh one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from deltaplane import checkpoint, losses
from deltaplane.devices import host_to_device
from deltaplane.fields.discriminator import PatchDiscriminator, PatchDiscriminatorConfig
from deltaplane.structs import FrameBatch

PREFIX = "discriminator."
"""Names of the discriminator's tensors in a checkpoint's training state (its Adam moments: `optim.` + this)."""
CROP_RNG = "rng.crops"


@dataclass(frozen=True)
class AdversarialConfig:
    """The discriminator of the adversarial term and how it is trained; used only while
    `LossWeights.adversarial` > 0 (it is training machinery: rendering never needs it)."""

    discriminator: PatchDiscriminatorConfig = field(default_factory=PatchDiscriminatorConfig)
    crop_size: int = 64
    """Side of the square crops, in pixels of the output image (64 at 512²: skin, eyes and lip texture rather than
    the face's layout, which the L1 terms already get right)."""
    crops_per_frame: int = 4
    """Crops cut from each training frame."""
    mouth_crops: int = 1
    """How many of a frame's crops lie inside its mouth box; the others lie inside its face box."""
    start: int = 1000
    """The renderer gets the adversarial term from this step on, once L1 has drawn the image (the discriminator
    trains from step 0)."""
    start_share: float | None = None
    """Or from this share of the run on (of `TrainConfig.steps`, or of `max_minutes` when that runs out first),
    whichever comes first (None: `start` alone). A run of minutes ends where its clock says, and at a fixed `start`
    a short one never gets the term: the 5-minute arms of run 51 stopped at 885 steps, with half the sharpness of
    the 7-minute ones (docs/sharpness.md "Run 51")."""
    matching_start: int | None = None
    """The feature-matching term's (`LossWeights.feature_match`) own start step; None: the hinge term's (`start`,
    `start_share`). At step 0 the discriminator's hidden layers are a random network's, which the LPIPS paper found a
    usable perceptual distance already."""
    lr: float = 2e-4
    """Adam learning rate of the discriminator (pix2pix / pix2pixHD), constant."""
    betas: tuple[float, float] = (0.5, 0.999)
    """Adam betas of the discriminator: β1 = 0.5 (pix2pix, Wav2Lip's discriminator) damps momentum towards a target
    that moves as the renderer changes."""

    def __post_init__(self) -> None:
        if self.crop_size < self.discriminator.min_crop:
            raise ValueError(f"crop_size {self.crop_size} is smaller than the discriminator's receptive minimum "
                             f"{self.discriminator.min_crop} (fewer downsamplings or larger crops)")
        if not 0 <= self.mouth_crops <= self.crops_per_frame:
            raise ValueError("mouth_crops must lie in [0, crops_per_frame]")
        if self.start_share is not None and not 0 <= self.start_share <= 1:
            raise ValueError(f"start_share must lie in [0, 1], got {self.start_share}")

    def describe_start(self) -> str:
        """Where the renderer gets the term, in words: "step 1000", or "step 1000 or 25 % of the run"."""
        share = "" if self.start_share is None else f" or {self.start_share:.0%} of the run".replace("%", " %")
        return f"step {self.start}{share}"

    def started(self, step: int, progress: float) -> bool:
        """Whether the renderer gets the term at `step`, with `progress` of the run done (a share, as `start_share`)."""
        return step >= self.start or (self.start_share is not None and progress >= self.start_share)

    def matching_started(self, step: int, progress: float) -> bool:
        """Whether the renderer gets the feature-matching term at `step` (`matching_start`, or as `started`)."""
        return self.started(step, progress) if self.matching_start is None else step >= self.matching_start


def box_bounds(mask: Bool[Tensor, "B 1 H W"]) -> Int[Tensor, "B 4"]:
    """(x0, y0, x1, y1) of each mask's bounding box in pixels, x1 and y1 exclusive (the pixels `data.dataset.box_mask`
    marked); an empty mask gives x0 = W, x1 = 0 (an empty box)."""
    spans = []
    for hit in (mask[:, 0].any(dim=-2), mask[:, 0].any(dim=-1)):  # columns [B, W], rows [B, H]
        index = torch.arange(hit.shape[-1], device=hit.device)
        spans.append((torch.where(hit, index, hit.shape[-1]).amin(-1), torch.where(hit, index + 1, 0).amax(-1)))
    (x0, x1), (y0, y1) = spans
    return torch.stack([x0, y0, x1, y1], dim=-1)


def crop_corners(bounds: Int[Tensor, "B K 4"], size: int, image_size: int, generator: torch.Generator
                 ) -> Int[Tensor, "B K 2"]:
    """Top-left (x, y) of a size² crop drawn uniformly among those inside each (x0, y0, x1, y1) box; along an axis
    where the box is narrower than the crop, the crop is centred on it. Crops are kept inside the image."""
    low, high = bounds[..., :2], bounds[..., 2:] - size  # [B, K, 2]: range of the corner
    uniform = host_to_device(torch.rand(low.shape, generator=generator, dtype=torch.float64), bounds.device)
    drawn = low + (uniform * (high - low + 1)).long()
    centred = torch.div(bounds[..., :2] + bounds[..., 2:] - size, 2, rounding_mode="floor")
    return torch.where(high >= low, drawn, centred).clamp(0, image_size - size)


def crop(images: Float[Tensor, "B C H W"], corners: Int[Tensor, "B K 2"], size: int
         ) -> Float[Tensor, "BK C size size"]:
    """The size² crops at `corners`, frame by frame (differentiable in `images`)."""
    offsets = torch.arange(size, device=images.device)
    rows = (corners[..., 1, None] + offsets)[..., :, None]  # [B, K, S, 1]
    columns = (corners[..., 0, None] + offsets)[..., None, :]  # [B, K, 1, S]
    frames = torch.arange(images.shape[0], device=images.device)[:, None, None, None]  # [B, 1, 1, 1]
    patches = images.permute(0, 2, 3, 1)[frames, rows, columns]  # [B, K, S, S, C]
    return patches.flatten(0, 1).permute(0, 3, 1, 2)


class PatchAdversary:
    """The discriminator with its own Adam and crop RNG; `generator_terms` are the renderer's terms, `step` the
    discriminator's update. It runs in float32 outside autocast: it is small (a few 64² crops per frame), so its own
    update needs no GradScaler and the spectral norm's power iteration keeps full precision."""

    def __init__(self, config: AdversarialConfig, device: torch.device, seed: int, compile: bool = False) -> None:
        """`compile`: score crops with the discriminator compiled (`TrainConfig.compile`)."""
        self.config = config
        with torch.random.fork_rng(devices=[]):  # the training's random stream stays that of a run without it
            self.discriminator = PatchDiscriminator(config.discriminator).to(device)
        self.score = torch.compile(self.discriminator) if compile else self.discriminator
        self.features = torch.compile(self.discriminator.features) if compile else self.discriminator.features
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr, betas=config.betas,
                                          fused=device.type == "cuda")
        self.generator = torch.Generator().manual_seed(seed + 1)  # its own stream: the frame sampler's is untouched
        self.names = {id(p): PREFIX + name for name, p in self.discriminator.named_parameters()}

    def corners(self, batch: FrameBatch) -> Int[Tensor, "B K 2"]:
        """Where this step's crops lie: `mouth_crops` per frame inside the mouth box, the rest inside the face box."""
        count, mouth = self.config.crops_per_frame, self.config.mouth_crops
        bounds = torch.cat([box_bounds(batch.mouth_box)[:, None].expand(-1, mouth, 4),
                            box_bounds(batch.face_box)[:, None].expand(-1, count - mouth, 4)], dim=1)  # [B, K, 4]
        return crop_corners(bounds, self.config.crop_size, batch.images.shape[-1], self.generator)

    def generator_terms(self, rendered: Float[Tensor, "B 3 H W"], images: Float[Tensor, "B 3 H W"],
                        corners: Int[Tensor, "B K 2"], matching: bool = False
                        ) -> tuple[Float[Tensor, ""], Float[Tensor, ""] | None]:
        """The hinge generator term of the rendered crops and, with `matching`, the feature-matching term: the mean
        over the discriminator's hidden layers of the mean L1 between the rendered crops' activations and the true
        crops' at the same places (pix2pixHD; the true ones without gradient). Unweighted; the discriminator's
        gradients these leave behind are dropped by its next `step`."""
        size = self.config.crop_size
        with torch.autocast(rendered.device.type, enabled=False):
            fake = crop(rendered, corners, size).float()
            if not matching:
                return losses.hinge_generator(self.score(fake)), None
            # one pass: in training mode each pass takes a power-iteration step of the spectral norm, and two passes
            # would compare the crops through two slightly different discriminators
            layers = [layer.chunk(2) for layer in self.features(torch.cat([fake, crop(images, corners, size).float()]))]
            matched = torch.stack([(mine - true.detach()).abs().mean() for mine, true in layers[:-1]]).mean()
            return losses.hinge_generator(layers[-1][0]), matched

    def step(self, rendered: Float[Tensor, "B 3 H W"], images: Float[Tensor, "B 3 H W"],
             corners: Int[Tensor, "B K 2"]) -> dict[str, Tensor]:
        """One Adam step of the hinge loss on real and (detached) rendered crops at the same places; returns the loss
        and the mean scores of each, detached, for the log."""
        size = self.config.crop_size
        real, fake = crop(images, corners, size).float(), crop(rendered.detach(), corners, size).float()
        with torch.autocast(rendered.device.type, enabled=False):
            real_scores, fake_scores = self.score(torch.cat([real, fake])).chunk(2)  # one pass, no batch norm
            loss = losses.hinge_discriminator(real_scores, fake_scores)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss/discriminator": loss.detach(), "discriminator/real": real_scores.detach().mean(),
                "discriminator/fake": fake_scores.detach().mean()}

    def state_tensors(self) -> dict[str, Tensor]:
        """Weights (with the spectral norm's power-iteration vectors), Adam moments and crop RNG, by checkpoint name."""
        return {**{PREFIX + name: value for name, value in self.discriminator.state_dict().items()},
                **checkpoint.optimizer_to_tensors(self.optimizer, self.names), CROP_RNG: self.generator.get_state()}

    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        """Inverse of `state_tensors`; a training state without the discriminator leaves this one fresh."""
        weights = {name[len(PREFIX):]: value for name, value in tensors.items() if name.startswith(PREFIX)}
        if not weights:
            return
        self.discriminator.load_state_dict(weights)
        checkpoint.optimizer_from_tensors(self.optimizer, self.names, tensors)
        self.generator.set_state(tensors[CROP_RNG])
