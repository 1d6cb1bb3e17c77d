"""Clip augmentation on whole batches, on the device the batch lives on.

Decoding already resized every clip (short side), so what is left is cheap arithmetic that a GPU
does for a whole batch in one kernel: :class:`VideoBatchTransform` turns collated uint8
``[b, t, h, w, c]`` clips into the normalized float ``[b, c, t, h, w]`` a backbone takes.

- Training: Inception-style random resized crop (Szegedy et al., "Going Deeper with
  Convolutions", CVPR 2015; torchvision's ``RandomResizedCrop``), one box per clip, shared by all
  its frames as in VideoMAE and SlowFast fine-tuning, then a random horizontal flip.
- Evaluation: resize the short side, take the centre crop (the single-crop test of VideoMAE /
  MMAction2).

Every crop is a box in source pixels resampled to ``size x size`` by one batched
:func:`torch.nn.functional.grid_sample` (bilinear); the flip mirrors the sampling grid, so it
costs nothing. Sampling is not antialiased: decode at a short side close to the crop size (as
``short_side = size * 256 / 224`` does) rather than shrinking large frames here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from vidlit.core.constants import IMAGENET_DEFAULT_MEAN as IMAGENET_MEAN
from vidlit.core.constants import IMAGENET_DEFAULT_STD as IMAGENET_STD

# torchvision's RandomResizedCrop draws up to 10 boxes and keeps the first that fits the frame
_CROP_ATTEMPTS = 10

# a clip's long side is cropped to at most this many times its (decode-resized) short side before
# batching: wider than 16:9 and 2.35:1 crops lose only the margins no square crop would reach
MAX_ASPECT = 2.5


def bound_aspect(frames: Tensor, short_side: int | None, max_aspect: float = MAX_ASPECT) -> Tensor:
    """Centre-crop the long side of ``[..., h, w, c]`` frames to at most ``max_aspect * short_side``.

    Applied to each clip in the dataset, before collation, so a batch's size follows the
    configuration (``short_side``) and not the files: a 2000 x 16 and a 16 x 2000 video in one batch
    would otherwise be zero-padded to 2250 x 2250 after decoding at short side 18. Clips within the
    bound (every ordinary aspect ratio) are returned as they are, so training and evaluation crops
    are unchanged for them.

    Args:
        frames: uint8 (or any dtype) frames, height and width in dims -3 and -2.
        short_side: the short side the decoder resized to; None (stored size) uses the clip's own.
        max_aspect: largest long side / short side kept.
    """
    height, width = frames.shape[-3], frames.shape[-2]
    short = min(height, width) if short_side is None else max(short_side, min(height, width))
    limit = max(1, math.ceil(short * max_aspect))
    if height > limit:
        top = (height - limit) // 2
        frames = frames[..., top : top + limit, :, :]
    if width > limit:
        left = (width - limit) // 2
        frames = frames[..., :, left : left + limit, :]
    return frames


def random_resized_boxes(
    frame_size: Tensor,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw one random resized crop box per clip, batched.

    As torchvision's ``RandomResizedCrop.get_params``: the box area is a uniform fraction
    ``scale`` of the frame area and its aspect ratio (w / h) log-uniform in ``ratio``; of
    ``10`` draws the first that fits inside the frame is kept, and a clip with none gets the
    largest centred box whose aspect ratio lies in ``ratio``. Boxes are not rounded to whole
    pixels.

    Args:
        frame_size: ``[b, 2]`` valid ``(h, w)`` of each clip's frames.
        scale: range of the box area as a fraction of the frame area.
        ratio: range of the box aspect ratio, width over height.
        generator: randomness, on ``frame_size``'s device; None uses the global generator.

    Returns:
        ``[b, 4]`` float boxes ``(y0, x0, h, w)`` in pixels.
    """
    frame_size = frame_size.float()
    b, device = frame_size.shape[0], frame_size.device
    height, width = frame_size[:, :1], frame_size[:, 1:]
    area = height * width
    draws = torch.rand(b, _CROP_ATTEMPTS, 4, generator=generator, device=device)
    target_area = area * (scale[0] + (scale[1] - scale[0]) * draws[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * draws[..., 1])
    w = torch.sqrt(target_area * aspect)
    h = torch.sqrt(target_area / aspect)
    fits = (w <= width) & (h <= height)
    first = torch.argmax(fits.int(), dim=1, keepdim=True)  # first fitting draw (0 when none fits)
    h, w = h.gather(1, first), w.gather(1, first)
    y0 = (height - h) * draws[..., 2].gather(1, first)
    x0 = (width - w) * draws[..., 3].gather(1, first)
    boxes = torch.cat((y0, x0, h, w), dim=1)
    # fallback: the whole frame, narrowed to the nearest allowed aspect ratio, centred
    frame_aspect = width / height
    fallback_w = torch.where(frame_aspect > ratio[1], height * ratio[1], width)
    fallback_h = torch.where(frame_aspect < ratio[0], width / ratio[0], height)
    fallback_w = torch.minimum(fallback_w, width)
    fallback_h = torch.minimum(fallback_h, height)
    fallback = torch.cat(((height - fallback_h) / 2, (width - fallback_w) / 2, fallback_h, fallback_w), dim=1)
    return torch.where(fits.any(dim=1, keepdim=True), boxes, fallback)


def center_boxes(frame_size: Tensor, size: int, short_side: int) -> Tensor:
    """The centre ``size x size`` crop after resizing each frame's short side to ``short_side``.

    Args:
        frame_size: ``[b, 2]`` valid ``(h, w)`` of each clip's frames.
        size: crop side after the resize.
        short_side: short side after the resize.

    Returns:
        ``[b, 4]`` float boxes ``(y0, x0, h, w)`` in source pixels.
    """
    frame_size = frame_size.float()
    side = frame_size.min(dim=1, keepdim=True).values * (size / short_side)  # crop side in source pixels
    origin = (frame_size - side) / 2
    return torch.cat((origin, side, side), dim=1)


def three_crop_boxes(frame_size: Tensor, size: int, short_side: int) -> Tensor:
    """Three ``size x size`` crops along each frame's long side, after resizing its short side.

    The spatial views of multi-view testing (Feichtenhofer et al., "SlowFast Networks", ICCV 2019;
    VideoMAE's ``test_num_crop=3``): the first, centre and last square along the long side, centred
    on the short one. With the default ``short_side = size`` the crops span the short side and
    together cover the whole frame.

    Args:
        frame_size: ``[b, 2]`` valid ``(h, w)`` of each clip's frames.
        size: crop side after the resize.
        short_side: short side after the resize.

    Returns:
        ``[b, 3, 4]`` float boxes ``(y0, x0, h, w)`` in source pixels, in order start, centre, end.
    """
    frame_size = frame_size.float()
    side = frame_size.min(dim=1, keepdim=True).values * (size / short_side)  # [b, 1] in source pixels
    room = frame_size - side  # [b, 2] free pixels along (h, w)
    tall = frame_size[:, 0] > frame_size[:, 1]  # [b]: the long side is the height
    steps = torch.tensor([0.0, 0.5, 1.0], device=frame_size.device)
    along_h = torch.where(tall[:, None], room[:, :1] * steps, room[:, :1] / 2)  # [b, 3]
    along_w = torch.where(tall[:, None], room[:, 1:] / 2, room[:, 1:] * steps)  # [b, 3]
    side = side.expand(-1, 3)
    return torch.stack((along_h, along_w, side, side), dim=-1)


def crop_resize(
    video: Tensor, boxes: Tensor, size: int, flip: Tensor | None = None, frame_size: Tensor | None = None
) -> Tensor:
    """Resample one box per clip to ``size x size``, the same box for every frame of a clip.

    Shape legend: ``b`` clips, ``t`` frames, ``h``/``w`` pixels, ``c`` channels, ``s`` = ``size``.

    Args:
        video: ``[b, t, h, w, c]`` clips, any real or integer dtype.
        boxes: ``[b, 4]`` boxes ``(y0, x0, h, w)`` in pixels (pixel ``i`` spans ``[i, i + 1)``).
        size: output side.
        flip: ``[b]`` bool, mirror those clips left to right.
        frame_size: ``[b, 2]`` valid ``(h, w)`` of each clip when frames were padded to a common
            size; samples are clamped into the valid area (border replication), so padding
            never bleeds in.

    Returns:
        float32 ``[b, c, t, s, s]``, values in the input's range.
    """
    b, t, h, w, c = video.shape
    device = video.device
    if frame_size is None:
        frame_size = torch.tensor([h, w], device=device).expand(b, 2)
    frame_size = frame_size.to(device=device, dtype=torch.float32)
    boxes = boxes.to(device=device, dtype=torch.float32)
    # centres of the output pixels, as fractions of the box: (j + 0.5) / size
    steps = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    across = steps.expand(b, size)
    if flip is not None:
        across = torch.where(flip.to(device)[:, None], 1 - across, across)
    ys = boxes[:, :1] + steps * boxes[:, 2:3]  # [b, s] source rows
    xs = boxes[:, 1:2] + across * boxes[:, 3:4]  # [b, s] source columns
    # stay on pixel centres of the valid area: replicate its border instead of sampling padding
    ys = torch.minimum(ys.clamp(min=0.5), frame_size[:, :1] - 0.5)
    xs = torch.minimum(xs.clamp(min=0.5), frame_size[:, 1:] - 0.5)
    # grid_sample's normalized coordinates (align_corners=False): -1 and 1 are the outer pixel edges
    grid_y = (2 * ys / h - 1)[:, :, None].expand(b, size, size)
    grid_x = (2 * xs / w - 1)[:, None, :].expand(b, size, size)
    grid = torch.stack((grid_x, grid_y), dim=-1)  # [b, s, s, 2] as (x, y)
    # the frames of a clip ride along as channels, so one grid crops them all alike
    x = rearrange(video, "b t h w c -> b (t c) h w").float()
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return rearrange(x, "b (t c) h w -> b c t h w", t=t, c=c)


class VideoBatchTransform:
    """uint8 ``[b, t, h, w, c]`` clips in, normalized float ``[b, c, t, size, size]`` out.

    Training: random resized crop (one box per clip, shared by all its frames), horizontal flip
    with probability ``hflip``. Evaluation: resize the short side to ``eval_short_side`` and take
    the centre ``size x size`` crop. Then ``(x / 255 - mean) / std``.

    Randomness comes only from the ``generator`` passed in, so a given generator state gives
    the same crops, on the CPU or on the GPU (a batch and its generator share a device).

    Args:
        size: output side in pixels.
        train: random (True) or centre (False) crops.
        scale: training box area as a fraction of the frame area.
        ratio: training box aspect ratio (width / height).
        hflip: training flip probability. Leave 0 where left and right matter (e.g. Something-
            Something, or the synthetic motion-direction labels).
        eval_short_side: evaluation resizes the short side to this before the centre crop;
            defaults to ``size`` (the crop spans the whole short side, as VideoMAE tests).
        mean: per-channel mean of ``x / 255``.
        std: per-channel standard deviation of ``x / 255``.
        num_crops: evaluation crops per clip: 1 (centre) or 3 (:func:`three_crop_boxes`); with 3,
            ``b`` clips give ``3 b`` outputs, the crops of a clip consecutive.

    Example:
        >>> transform = VideoBatchTransform(224, train=True)
        >>> video = torch.randint(0, 256, (2, 16, 256, 340, 3), dtype=torch.uint8)
        >>> transform(video, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 16, 224, 224])
    """

    def __init__(
        self,
        size: int,
        train: bool,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        eval_short_side: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        num_crops: int = 1,
    ):
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 (centre) or 3 (along the long side), got {num_crops}")
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {tuple(scale)}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {tuple(ratio)}")
        if not 0 <= hflip <= 1:
            raise ValueError(f"hflip is a probability, got {hflip}")
        eval_short_side = size if eval_short_side is None else eval_short_side
        if eval_short_side < size:
            raise ValueError(f"eval_short_side ({eval_short_side}) must be at least size ({size})")
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need one value per channel, std > 0; got {mean} and {std}")
        self.size = size
        self.train = train
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.hflip = float(hflip)
        self.eval_short_side = eval_short_side
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.num_crops = num_crops

    def __call__(
        self, video: Tensor, frame_size: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Crop, flip and normalize a batch of clips.

        Args:
            video: uint8 ``[b, t, h, w, c]``.
            frame_size: ``[b, 2]`` valid ``(h, w)`` of each clip when the collate function padded
                clips of different sizes; None when every frame is whole.
            generator: training randomness, on ``video``'s device; None uses the global one.

        Returns:
            float32 ``[b, c, t, size, size]`` (``[b * num_crops, ...]`` in evaluation, each clip's crops
            consecutive).
        """
        if video.ndim != 5 or video.shape[-1] != len(self.mean):
            raise ValueError(
                f"expected clips [b, t, h, w, c={len(self.mean)}], got shape {tuple(video.shape)}"
            )
        b, _, h, w, _ = video.shape
        device = video.device
        if frame_size is None:
            frame_size = torch.tensor([h, w], device=device).expand(b, 2)
        frame_size = frame_size.to(device)
        flip = None
        if self.train:
            boxes = random_resized_boxes(frame_size, self.scale, self.ratio, generator)
            if self.hflip > 0:
                flip = torch.rand(b, generator=generator, device=device) < self.hflip
        elif self.num_crops == 3:
            boxes = rearrange(
                three_crop_boxes(frame_size, self.size, self.eval_short_side), "b n k -> (b n) k"
            )
            # every crop of a clip resamples the same frames: n x [t, h, w, c] views, no copies
            video = video.repeat_interleave(3, dim=0)
            frame_size = frame_size.repeat_interleave(3, dim=0)
        else:
            boxes = center_boxes(frame_size, self.size, self.eval_short_side)
        x = crop_resize(video, boxes, self.size, flip=flip, frame_size=frame_size)
        # (x / 255 - mean) / std as one multiply-add
        std = torch.tensor(self.std, device=device)
        mean = torch.tensor(self.mean, device=device)
        gain = (1 / (255 * std)).view(-1, 1, 1, 1)
        return x * gain - (mean / std).view(-1, 1, 1, 1)

    def __repr__(self) -> str:
        mode = (
            f"train, scale={self.scale}, ratio={self.ratio}, hflip={self.hflip}"
            if self.train
            else f"eval, short_side={self.eval_short_side}, crops={self.num_crops}"
        )
        return f"VideoBatchTransform(size={self.size}, {mode})"
