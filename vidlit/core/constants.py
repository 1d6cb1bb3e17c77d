"""Constants every layer reads: the pixel normalization of pretrained video backbones.

One copy, imported by the data transforms (which apply it), the masked-video-modeling targets
(which undo it), the task modules' defaults, ``vidlit extract`` and ``vidlit data curate``.
"""

from __future__ import annotations

__all__ = ["IMAGENET_DEFAULT_MEAN", "IMAGENET_DEFAULT_STD"]

# Per-channel mean and standard deviation of x / 255 (RGB), timm's names. VideoMAE and
# InternVideo's VideoMAE branch normalize with the ImageNet statistics, so every vidlit default
# does; a recipe that loads weights trained otherwise (e.g. CLIP's statistics) states its own
# mean / std in the data module and the task module's pixel_mean / pixel_std.
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)
