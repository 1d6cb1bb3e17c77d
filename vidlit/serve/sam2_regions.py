"""Optional promptable segmenter for the pointing page: SAM 2 (the ``sam2`` package) with video propagation.

``vidlit serve --sam2_config configs/sam2.1/sam2.1_hiera_t.yaml --sam2_ckpt sam2.1_hiera_tiny.pt``
segments the clicked object with SAM 2 (Ravi et al., 2024, "SAM 2: Segment Anything in Images and
Videos") instead of the built-in token-similarity grower. SAM 2 sees the frames the vidlit model
sees (the clip's sampled frames, decoded at the model's input resolution), is prompted on the one
nearest the clicked frame and propagates the mask forwards and backwards through them; a token
joins the region when SAM 2's mask covers at least half of its patch in any frame of its tubelet.
The region then goes to the model exactly like a grown one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidlit.inference import Clip

__all__ = ["Sam2Segmenter"]


class Sam2Segmenter:
    """SAM 2's video predictor turned into token regions.

    Args:
        config: a SAM 2 config name inside the ``sam2`` package (e.g.
            ``"configs/sam2.1/sam2.1_hiera_t.yaml"``).
        checkpoint: its weights; None builds the model with random weights (tests only: the masks
            are then meaningless).
        device: where SAM 2 runs.
        image_size: SAM 2's input side (its configs: 1024); smaller is faster on a CPU.

    Raises:
        ImportError: the ``sam2`` package is not installed.
    """

    def __init__(
        self, config: str, checkpoint: str | Path | None = None, device: str = "cpu", image_size: int = 1024
    ):
        try:
            from sam2.build_sam import build_sam2_video_predictor
        except ImportError as e:
            raise ImportError("SAM 2 regions need the `sam2` package (pip install sam2)") from e
        self.model = build_sam2_video_predictor(
            config,
            ckpt_path=str(checkpoint) if checkpoint is not None else None,
            device=device,
            mode="eval",
            hydra_overrides_extra=[f"++model.image_size={image_size}"],
        )

    @torch.inference_mode()
    def region(
        self,
        clip: Clip,
        grid: tuple[int, int, int],
        frame: int,
        points: list[tuple[float, float]],
        box: tuple[float, float, float, float] | None = None,
    ) -> Tensor:
        """bool ``[t, h, w]`` token region of the object under ``points`` (or in ``box``) on ``frame``.

        Args:
            clip: the prepared video (its first view is segmented).
            grid: the backbone's token grid.
            frame: the source frame the prompt was given on.
            points: positive clicks, ``(x, y)`` fractions of the frame.
            box: ``(x0, y0, x1, y1)`` fractions of the frame.
        """
        from PIL import Image

        sampled = clip.frame_indices[0]
        # uint8 [t, h, w, 3] frames the model sees, before its normalization: undo it
        video = clip.batch["video"][0].float().cpu()  # [c, t, h, w], normalized
        mean = torch.tensor(clip.normalization[0])[:, None, None, None]
        std = torch.tensor(clip.normalization[1])[:, None, None, None]
        pixels = ((video * std + mean) * 255).clamp(0, 255).round().byte().permute(1, 2, 3, 0).numpy()
        t, h, w = grid
        size = pixels.shape[1:3]
        prompt_at = int(np.abs(sampled - frame).argmin())
        y0, x0, ch, cw = clip.crop
        # prompts in the crop's pixels (the crop is what the model, and SAM 2 here, sees)
        to_px = lambda x, y: ((x - x0) / cw * size[1], (y - y0) / ch * size[0])  # noqa: E731
        kwargs: dict = {}
        if box is not None:
            (a, b), (c, d) = to_px(box[0], box[1]), to_px(box[2], box[3])
            kwargs["box"] = np.array([min(a, c), min(b, d), max(a, c), max(b, d)], dtype=np.float32)
        if points:
            kwargs["points"] = np.array([to_px(x, y) for x, y in points], dtype=np.float32)
            kwargs["labels"] = np.ones(len(points), dtype=np.int32)
        with tempfile.TemporaryDirectory(prefix="vidlit-sam2-") as tmp:
            for i, image in enumerate(pixels):  # SAM 2 reads a folder of <index>.jpg frames
                Image.fromarray(image).save(Path(tmp) / f"{i}.jpg", quality=95)
            state = self.model.init_state(tmp)
            self.model.add_new_points_or_box(state, frame_idx=prompt_at, obj_id=1, **kwargs)
            masks = torch.zeros(len(pixels), *size, dtype=torch.bool)
            for reverse in (False, True):
                for index, _, logits in self.model.propagate_in_video(state, reverse=reverse):
                    masks[index] = logits[0, 0].cpu() > 0
        # a patch's covered fraction in each frame, then any frame of its tubelet
        cover = F.adaptive_avg_pool2d(masks[:, None].float(), (h, w))[:, 0]  # [frames, h, w]
        tubelet = len(pixels) // t
        return (cover >= 0.5).reshape(t, tubelet, h, w).any(dim=1)
