"""Batch augmentations of video fine-tuning, on the training device: RandAugment, erasing, mixup / cutmix.

VideoMAE fine-tunes with RandAugment (``rand-m7-n4-mstd0.5-inc1``) applied identically to every
frame of a clip, random erasing (probability 0.25, pixel mode), and mixup (alpha 0.8) or cutmix
(alpha 1.0), switched with probability 0.5, with label smoothing 0.1 folded into the mixed soft
targets. :class:`VideoAugment` does all of it on a batch after the data module's on-device crop
and normalization, so it is a :class:`~vidlit.tasks.TaskModule` option (``augment``) that runs in
training steps only.

Shape legend: ``b`` clips, ``c`` channels, ``t`` frames, ``h``/``w`` pixels, ``k`` classes.

What comes from torchvision ``transforms.v2`` and what is written here:

- mixup / cutmix: :class:`MixupCutmix`, written here with timm's batch mode and torchvision's
  box law, pairing clip ``i`` with clip ``(i + b // 2) mod b``; it mixes whole clips (mixup) or
  pastes one box of the spatial axes (the last two) over all frames (cutmix), and mixes one-hot
  targets by the pasted area. timm's ``Mixup`` slices the wrong axes of a 5-D clip; torchvision's
  ``v2.MixUp`` / ``v2.CutMix`` pair clip ``i`` with ``i - 1`` (``roll(1)``), which under
  repeated augmentation (the copies of a video adjacent in the batch) pairs half the clips with
  their own copy: their targets are not mixed at all (timm's ``flip(0)`` does so for the middle
  two clips when ``b = 2 mod 4``).
- RandAugment: :class:`ClipRandAugment` subclasses ``v2.RandAugment`` (its op machinery) with
  timm's ``inc1`` op table and semantics: each of ``num_ops`` ops is applied with probability
  ``prob`` at a magnitude drawn from ``N(magnitude, magnitude_std)``, once per clip for all of its
  frames (torchvision's own table has milder Posterize, no Invert or SolarizeAdd, and Identity).
- random erasing: :class:`ClipErasing`, one box per clip over all frames, filled with per-pixel
  normal noise drawn on the batch's device (``v2.RandomErasing`` draws it on the host).

Repeated augmentation (Hoffer et al., 2020; DeiT) is :class:`RepeatAugSampler`, a training
sampler that draws each video ``num_repeats`` times per epoch, the copies on different ranks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence, Sized
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.data import DistributedSampler
from torchvision import tv_tensors
from torchvision.transforms import v2

from vidlit.core.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from vidlit.data.base import global_seed

__all__ = [
    "ClipErasing",
    "ClipRandAugment",
    "MixupCutmix",
    "RepeatAugSampler",
    "VideoAugment",
    "smooth_one_hot",
]

_LEVELS = 10  # timm's magnitude scale: m in [0, 10]
_BINS = 101  # torchvision magnitude bins: bin round(10 m) of 101 is timm's magnitude m


def _bin(level: float) -> int:
    """torchvision's magnitude bin (of :data:`_BINS`) of a magnitude on timm's 0-10 scale."""
    return round(level * (_BINS - 1) / _LEVELS)


def _timm_increasing_space() -> dict[str, tuple[Callable[[int, int, int], Tensor | None], bool]]:
    """timm's ``inc1`` RandAugment ops (``_RAND_INCREASING_TRANSFORMS``) as torchvision magnitude
    tables: ``name -> (magnitudes(num_bins, height, width), signed)``; bin ``b`` of 101 is timm's
    level ``b / 10``. Where torchvision's table differs from timm's it is replaced: Posterize keeps
    ``4 - int(level * 0.4)`` bits (torchvision: 8 down to 4), translation is 0.45 of the side
    (torchvision: 150 / 331); Invert and SolarizeAdd are timm's and Identity is not."""

    def linear(top: float) -> Callable[[int, int, int], Tensor]:
        return lambda bins, height, width: torch.linspace(0.0, top, bins)

    def none(bins: int, height: int, width: int) -> None:
        return None

    def steps(bins: int) -> Tensor:  # timm's level of each bin, 0..10
        return torch.arange(bins, dtype=torch.float64) * _LEVELS / (bins - 1)

    return {
        "AutoContrast": (none, False),
        "Equalize": (none, False),
        "Invert": (none, False),
        "Rotate": (linear(30.0), True),
        # timm's int() of a non-negative level is a floor
        "Posterize": (lambda bins, height, width: 4 - (steps(bins) * 0.4).floor().int(), False),
        "Solarize": (lambda bins, height, width: 1.0 - steps(bins).float() / _LEVELS, False),  # x max value
        "SolarizeAdd": (lambda bins, height, width: (steps(bins) * 11).floor().float(), False),  # of 255
        "Color": (linear(0.9), True),
        "Contrast": (linear(0.9), True),
        "Brightness": (linear(0.9), True),
        "Sharpness": (linear(0.9), True),
        "ShearX": (linear(0.3), True),
        "ShearY": (linear(0.3), True),
        "TranslateX": (lambda bins, height, width: torch.linspace(0.0, 0.45 * width, bins), True),
        "TranslateY": (lambda bins, height, width: torch.linspace(0.0, 0.45 * height, bins), True),
    }


class ClipRandAugment(v2.RandAugment):
    """RandAugment with timm's ``rand-m{magnitude}-n{num_ops}-mstd{magnitude_std}-inc1`` semantics, per clip.

    One call takes one clip ``[t, c, h, w]`` (float in ``[0, 1]`` or uint8) and applies the same
    ops, magnitudes and signs to all of its frames. The ops and their magnitudes are timm's
    ``inc1`` set, whose severity rises with the magnitude (:func:`_timm_increasing_space`;
    VideoMAE's ``rand_augment.py`` is a copy of it): AutoContrast, Equalize, Invert, Rotate,
    Posterize, Solarize, SolarizeAdd, Color, Contrast, Brightness, Sharpness, ShearX / Y and
    TranslateX / Y (relative), run by torchvision's ``v2.RandAugment`` machinery, with timm's grey
    fill (128) for the pixels geometric ops uncover and bilinear interpolation (VideoMAE's PIL
    frames use bicubic, which torchvision's tensor ``affine`` lacks).

    Args:
        num_ops: ops drawn per clip (timm ``n``; VideoMAE 4).
        magnitude: mean magnitude on timm's 0-10 scale (``m``; VideoMAE 7).
        magnitude_std: standard deviation of the magnitude drawn per op (``mstd``; VideoMAE 0.5);
            the draw is clipped to ``[0, 10]``.
        prob: probability of applying each drawn op (timm's RandAugment: 0.5).
    """

    _AUGMENTATION_SPACE = _timm_increasing_space()

    def __init__(
        self, num_ops: int = 4, magnitude: float = 7.0, magnitude_std: float = 0.5, prob: float = 0.5
    ):
        if num_ops < 0 or not 0 <= magnitude <= _LEVELS or magnitude_std < 0 or not 0 <= prob <= 1:
            raise ValueError(
                f"ClipRandAugment needs num_ops >= 0, magnitude in [0, {_LEVELS}], magnitude_std >= 0 "
                f"and prob in [0, 1]; got {num_ops}, {magnitude}, {magnitude_std}, {prob}"
            )
        super().__init__(
            num_ops=num_ops,
            magnitude=_bin(magnitude),
            num_magnitude_bins=_BINS,
            interpolation=v2.InterpolationMode.BILINEAR,
        )
        self.mean_magnitude = float(magnitude)
        self.magnitude_std = float(magnitude_std)
        self.prob = float(prob)

    def draw(self) -> list[tuple[str, float, bool, Any]]:
        """One clip's ops: ``(name, magnitude on the 0-10 scale, signed, magnitude table)``, those applied."""
        ops = []
        for _ in range(self.num_ops):
            if torch.rand(()) >= self.prob:
                continue
            name, (magnitudes_fn, signed) = self._get_random_item(self._AUGMENTATION_SPACE)
            level = self.mean_magnitude
            if self.magnitude_std > 0:
                level = float(torch.normal(torch.tensor(level), self.magnitude_std).clamp(0, _LEVELS))
            ops.append((name, level, signed, magnitudes_fn))
        return ops

    def forward(self, clip: Tensor) -> Tensor:
        """``[t, c, h, w]`` clip in, the same clip with one draw of ops applied to every frame out."""
        return self.apply(clip, self.draw())

    def apply(self, clip: Tensor, ops: list[tuple[str, float, bool, Any]]) -> Tensor:
        """``clip`` with ``ops`` (:meth:`draw`'s) applied to every frame; a signed op's sign is drawn here."""
        top = 255.0 if clip.dtype == torch.uint8 else 1.0
        fill = {tv_tensors.Video: 128 if clip.dtype == torch.uint8 else 128 / 255}  # timm's _FILL
        video = tv_tensors.Video(clip)
        height, width = clip.shape[-2:]
        for name, level, signed, magnitudes_fn in ops:
            magnitudes = magnitudes_fn(_BINS, height, width)
            value = 0.0
            if magnitudes is not None:
                value = float(magnitudes[_bin(level)])
                if signed and torch.rand(()) <= 0.5:
                    value = -value
            if name == "SolarizeAdd":  # timm: pixels below 128 raised by value, capped at 255
                raised = (video.as_subclass(Tensor).float() + value * top / 255).clamp(max=top)
                video = tv_tensors.Video(torch.where(video < 128 * top / 255, raised.to(clip.dtype), video))
                continue
            video = self._apply_image_or_video_transform(
                video, name, value, interpolation=self.interpolation, fill=fill
            )
        return video.as_subclass(Tensor)


class ClipErasing(nn.Module):
    """Random erasing (Zhong et al., 2020) of one box per clip, the same box in every frame.

    timm's ``RandomErasing(mode="pixel")`` box law: area a uniform fraction of the frame in
    ``scale``, log-uniform aspect ratio in ``ratio``, up to 10 tries; the box is filled with
    per-pixel standard-normal noise (the input is normalized, so noise is in pixel-std units),
    one noise image shared by the frames of the clip.

    VideoMAE (as SlowFast / MViT) hands timm's ``RandomErasing`` the ``[t, c, h, w]`` frames as a
    batch of images, so each frame is erased (or not) on its own, in its own box: that is
    ``per_frame=True``.

    Args:
        prob: probability of erasing a clip, or a frame with ``per_frame`` (VideoMAE 0.25).
        scale: erased area range, as a fraction of the frame.
        ratio: aspect-ratio range (height / width).
        per_frame: draw the erasing for every frame apart (VideoMAE's code) instead of per clip.
    """

    def __init__(
        self,
        prob: float = 0.25,
        scale: tuple[float, float] = (0.02, 1 / 3),
        ratio: tuple[float, float] = (0.3, 3.3),
        per_frame: bool = False,
    ):
        super().__init__()
        if not 0 <= prob <= 1 or not 0 < scale[0] <= scale[1] < 1 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(
                f"ClipErasing needs prob in [0, 1], 0 < scale <= 1, 0 < ratio; got {prob}, {scale}"
            )
        self.prob = float(prob)
        self.scale = (float(scale[0]), float(scale[1]))
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        self.per_frame = per_frame

    def box(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        """``(top, left, box_h, box_w)`` of one clip, or None (no erasing, or no box fits in 10 tries)."""
        if torch.rand(()) >= self.prob:
            return None
        for _ in range(10):
            area = height * width * float(torch.empty(()).uniform_(*self.scale))
            aspect = math.exp(float(torch.empty(()).uniform_(*self.log_ratio)))
            h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < h < height and 0 < w < width:
                top = int(torch.randint(0, height - h + 1, ()))
                left = int(torch.randint(0, width - w + 1, ()))
                return top, left, h, w
        return None

    def forward(self, video: Tensor) -> Tensor:
        """Normalized ``[b, c, t, h, w]`` in, the clips with their boxes erased out (a new tensor)."""
        video = video.clone()
        b, c, t, height, width = video.shape
        # a clip, or with per_frame each frame, is one unit: ([b] clip index, frame slice)
        units = [(i, slice(f, f + 1)) for i in range(b) for f in range(t)] if self.per_frame else None
        for i, frames in units or [(i, slice(None)) for i in range(b)]:
            box = self.box(height, width)
            if box is None:
                continue
            top, left, h, w = box
            noise = torch.randn(c, 1, h, w, device=video.device, dtype=video.dtype)  # shared by frames
            video[i, :, frames, top : top + h, left : left + w] = noise
        return video


def smooth_one_hot(targets: Tensor, smoothing: float) -> Tensor:
    """Label smoothing of (mixed) one-hot ``[b, k]`` targets: ``(1 - s) y + s / k``.

    Linear in ``y``, so smoothing a mixed target equals mixing smoothed targets (timm's
    ``mixup_target``).
    """
    return targets * (1.0 - smoothing) + smoothing / targets.shape[-1]


class MixupCutmix(nn.Module):
    """Mixup (Zhang et al., 2018) or CutMix (Yun et al., 2019) of a clip batch, one draw per batch.

    timm's ``Mixup`` (``mode="batch"``) on ``[b, c, t, h, w]``, except for the pairing: clip
    ``i`` is mixed with clip ``(i + b // 2) mod b``, at a weight ``lam ~ Beta(alpha, alpha)``
    drawn once per batch. Repeated augmentation puts a video's ``r`` copies next to each other
    (``[a, a, b, b, ...]``); half a batch away, no clip meets its own copy whenever the batch holds
    at least ``2 r`` clips, whatever its size (torchvision's ``roll(1)`` pairs half the clips with
    their copy; timm's ``flip(0)`` pairs the middle two when ``b = 2 mod 4``, which a last or
    partly skipped batch makes happen). Cutmix pastes one box of the
    last two (spatial) axes over all frames (torchvision's ``v2.CutMix`` box law: centre uniform
    in the frame, sides ``sqrt(1 - lam)`` of the frame's, clipped to it) and the targets mix by
    the pasted area, as ``timm.data.mixup.mixup_target`` with the area-corrected ``lam``. With
    both alphas positive one of the two is chosen per batch, cutmix with probability
    ``switch_prob``.

    Args:
        mixup_alpha: Beta(alpha, alpha) of the mixup weight; 0 turns mixup off (VideoMAE 0.8).
        cutmix_alpha: Beta(alpha, alpha) of the kept area; 0 turns cutmix off (VideoMAE 1.0).
        switch_prob: probability of cutmix when both are on (VideoMAE 0.5).
        label_smoothing: smoothing of the mixed targets (VideoMAE 0.1).
        prob: probability of mixing a batch at all (VideoMAE 1.0).
    """

    def __init__(
        self,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        prob: float = 1.0,
    ):
        super().__init__()
        if mixup_alpha < 0 or cutmix_alpha < 0 or not mixup_alpha + cutmix_alpha > 0:
            raise ValueError(
                f"mixup_alpha and cutmix_alpha must be >= 0, one > 0; got {mixup_alpha}, {cutmix_alpha}"
            )
        if not (0 <= switch_prob <= 1 and 0 <= label_smoothing < 1 and 0 <= prob <= 1):
            raise ValueError(
                f"switch_prob and prob must lie in [0, 1], label_smoothing in [0, 1); "
                f"got {switch_prob}, {prob}, {label_smoothing}"
            )
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.switch_prob = float(switch_prob)
        self.label_smoothing = float(label_smoothing)
        self.prob = float(prob)

    def choose(self) -> str | None:
        """``"mixup"``, ``"cutmix"`` or None (no mixing) for the next batch."""
        if torch.rand(()) >= self.prob:
            return None
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            return "cutmix" if torch.rand(()) < self.switch_prob else "mixup"
        return "mixup" if self.mixup_alpha > 0 else "cutmix"

    def forward(self, video: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
        """Mix ``[b, c, t, h, w]`` clips with int64 ``[b]`` labels; float ``[b, k]`` soft targets out."""
        targets = nn.functional.one_hot(labels, num_classes).to(video.dtype)
        kind = self.choose()
        if kind is None:
            return video, smooth_one_hot(targets, self.label_smoothing)
        alpha = self.mixup_alpha if kind == "mixup" else self.cutmix_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        shift = video.shape[0] // 2  # clip i with clip (i + b // 2) mod b: never its adjacent copy
        partner = video.roll(-shift, 0)
        if kind == "mixup":
            video = video * lam + partner * (1.0 - lam)
        else:
            height, width = video.shape[-2:]
            top, bottom, left, right = self._box(lam, height, width)
            video = video.clone()
            video[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / (height * width)  # the area kept
        targets = targets * lam + targets.roll(-shift, 0) * (1.0 - lam)
        return video, smooth_one_hot(targets, self.label_smoothing)

    @staticmethod
    def _box(lam: float, height: int, width: int) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)`` of a cutmix box (torchvision ``v2.CutMix``'s law)."""
        r_x, r_y = int(torch.randint(width, ())), int(torch.randint(height, ()))
        r = 0.5 * math.sqrt(1.0 - lam)
        r_w_half, r_h_half = int(r * width), int(r * height)
        left, top = max(r_x - r_w_half, 0), max(r_y - r_h_half, 0)
        right, bottom = min(r_x + r_w_half, width), min(r_y + r_h_half, height)
        return top, bottom, left, right


class VideoAugment(nn.Module):
    """VideoMAE's training-batch augmentations, on the device: RandAugment, erasing, mixup / cutmix.

    Takes a batch after the data module's on-device transform (normalized float
    ``batch["video"]`` ``[b, c, t, h, w]``, int64 ``batch["labels"]`` ``[b]``) and returns it
    with the clips augmented and, when mixing, float ``batch["soft_labels"]`` ``[b, k]``, which
    :class:`~vidlit.heads.classification.ClassificationHead` uses as cross-entropy targets.
    RandAugment runs on the clip's pixels in ``[0, 1]`` (undoing ``mean`` / ``std``, which must
    be the data module's), after the random resized crop (VideoMAE augments before cropping).

    Args:
        rand_augment: per-clip RandAugment, None for none.
        erasing: per-clip random erasing, None for none.
        mix: mixup / cutmix, None for none.
        mean: per-channel normalization mean of the data module; None (with ``std``): the
            data module's ``train_transform.mean`` when :class:`~vidlit.tasks.TaskModule` starts
            fitting (:meth:`match_normalization`), ImageNet's when it has none.
        std: per-channel normalization standard deviation of the data module.

    Example:
        ``model.init_args.augment`` in a recipe::

            augment:
              rand_augment: {num_ops: 4, magnitude: 7, magnitude_std: 0.5}
              erasing: {prob: 0.25}
              mix: {mixup_alpha: 0.8, cutmix_alpha: 1.0, switch_prob: 0.5, label_smoothing: 0.1}
    """

    def __init__(
        self,
        rand_augment: ClipRandAugment | None = None,
        erasing: ClipErasing | None = None,
        mix: MixupCutmix | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        super().__init__()
        self.rand_augment = rand_augment
        self.erasing = erasing
        self.mix = mix
        self.given = mean is not None or std is not None
        self.match_normalization(
            IMAGENET_DEFAULT_MEAN if mean is None else mean, IMAGENET_DEFAULT_STD if std is None else std
        )

    def match_normalization(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Set the normalization RandAugment undoes (the data module's).

        Raises:
            ValueError: unless ``mean`` and ``std`` have one value per channel and ``std > 0``.
        """
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need one value per channel, std > 0; got {mean} and {std}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    @classmethod
    def videomae(cls, **overrides: Any) -> VideoAugment:
        """VideoMAE's fine-tuning defaults (``run_class_finetuning.py``), each replaceable by keyword."""
        parts = {"rand_augment": ClipRandAugment(), "erasing": ClipErasing(), "mix": MixupCutmix()}
        return cls(**(parts | overrides))

    def _rand_augment(self, video: Tensor) -> Tensor:
        shape = (1, -1, 1, 1, 1)  # b c t h w
        mean = torch.tensor(self.mean, device=video.device, dtype=video.dtype).view(shape)
        std = torch.tensor(self.std, device=video.device, dtype=video.dtype).view(shape)
        pixels = (video * std + mean).clamp(0, 1)
        clips = [
            rearrange(self.rand_augment(rearrange(clip, "c t h w -> t c h w")), "t c h w -> c t h w")
            for clip in pixels
        ]
        return (torch.stack(clips) - mean) / std

    def forward(self, batch: dict[str, Any], num_classes: int) -> dict[str, Any]:
        """Augment ``batch`` (a new dict; the input's tensors are not modified).

        Args:
            batch: a classification batch with ``video`` and ``labels``.
            num_classes: width of the soft targets.
        """
        video = batch["video"]
        if video.ndim != 5 or video.shape[1] != len(self.mean) or not video.is_floating_point():
            raise ValueError(
                f"VideoAugment expects normalized float clips [b, c={len(self.mean)}, t, h, w], "
                f"got {video.dtype} {tuple(video.shape)}"
            )
        batch = dict(batch)
        if self.rand_augment is not None:
            video = self._rand_augment(video)
        if self.erasing is not None:
            video = self.erasing(video)
        if self.mix is not None:
            video, batch["soft_labels"] = self.mix(video, batch["labels"], num_classes)
        batch["video"] = video
        return batch


class RepeatAugSampler(DistributedSampler):
    """Repeated-augmentation sampler: every drawn index ``num_repeats`` times, the copies on different ranks.

    timm's ``RepeatAugSampler`` (DeiT's ``RASampler``): an epoch-seeded permutation, each index
    repeated ``num_repeats`` times in a row (``[a, a, b, b, ...]``), padded to a multiple of the
    world size and dealt round-robin to the ranks, so the copies of one video land on
    ``num_repeats`` different ranks (or twice in one rank's stream on a single process) and
    are augmented independently. With ``shorten`` (timm's default without its multiple-of-256
    rounding) each rank stops after ``ceil(len / num_replicas)`` indices, the epoch length of
    plain sampling: an epoch then covers about ``1 / num_repeats`` of the videos. Without it an
    epoch covers every video ``num_repeats`` times. VideoMAE's ``--num_sample 2`` (one decode,
    two augmented clips in the same batch) is :class:`~vidlit.data.VideoListDataModule`'s
    ``repeated_aug`` instead.

    It subclasses ``DistributedSampler``, so Lightning does not wrap it in another distributed
    sampler; give it to a data module as ``train_sampler``.

    Args:
        data_source: the dataset (only its length is used).
        num_repeats: copies of each drawn index.
        shorten: keep plain sampling's epoch length (timm); False: every index ``num_repeats``
            times per epoch.
        num_replicas: world size; defaults to ``torch.distributed``'s, or 1.
        rank: this process's rank; defaults to ``torch.distributed``'s, or 0.
        shuffle: permute before repeating (False: in index order).
        seed: base seed of the permutation; defaults to ``PL_GLOBAL_SEED`` (``seed_everything``) or 0.
        epoch_fn: returns the epoch about to be iterated (the data module's); None uses the
            epoch given to ``set_epoch``.
    """

    def __init__(
        self,
        data_source: Sized,
        num_repeats: int = 2,
        shorten: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int | None = None,
        epoch_fn: Callable[[], int] | None = None,
    ):
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if num_replicas is None:
            num_replicas = torch.distributed.get_world_size() if distributed else 1
        if rank is None:
            rank = torch.distributed.get_rank() if distributed else 0
        if num_repeats < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_repeats >= 1 and 0 <= rank < num_replicas; got {num_repeats}, {rank}")
        self.dataset = data_source
        self.num_replicas, self.rank = num_replicas, rank
        self.num_repeats = num_repeats
        self.shuffle, self.epoch, self.drop_last = shuffle, 0, False
        self.seed = global_seed() if seed is None else seed
        self.epoch_fn = epoch_fn
        self.total_size = math.ceil(len(data_source) * num_repeats / num_replicas) * num_replicas
        self.num_samples = self.total_size // num_replicas
        self.num_selected = math.ceil(len(data_source) / num_replicas) if shorten else self.num_samples

    def __len__(self) -> int:
        return self.num_selected

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch_fn() if self.epoch_fn is not None else self.epoch
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        else:
            order = torch.arange(n)
        indices = order.repeat_interleave(self.num_repeats).tolist()
        indices += indices[: self.total_size - len(indices)]  # pad to a multiple of the world size
        return iter(indices[self.rank : self.total_size : self.num_replicas][: self.num_selected])
