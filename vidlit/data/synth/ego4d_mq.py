"""A synthetic Ego4D Moment Queries dataset in the official annotation and feature layout.

Every clip is a sequence of feature vectors: slowly drifting noise, plus, inside each moment, a
class prototype whose strength ramps up from the moment's boundaries. Prototypes share a common
component (classes are confusable) and unannotated distractor bursts of other directions appear
between moments, so a head has to learn both what (the prototype) and where (the extent) to
reach a high mAP; at the default ``signal`` the recipe's ActionFormer climbs from about 0.15
to about 0.85 val mAP over its epochs.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import torch

from vidlit.formats._schema import validate
from vidlit.formats.ego4d_mq import SPLIT_FILES, FeatureClock, MQFile

# a few of the 110 Ego4D MQ classes, so files look like the real thing
CLASS_NAMES = (
    "wash_hands",
    "use_phone",
    "cut_dough",
    "drink_beverage",
    "fold_clothes_/_sheets",
    "throw_away_trash_/_put_trash_in_trash_can",
    "read_a_book_/_magazine_/_shopping_list_etc.",
    "clean_/_wipe_a_table_or_kitchen_counter",
)


def _uid(generator: torch.Generator) -> str:
    return str(uuid.UUID(bytes=bytes(torch.randint(0, 256, (16,), generator=generator).tolist()), version=4))


def write_ego4d_mq(
    out: str | Path,
    num_train: int = 96,
    num_val: int = 32,
    num_test: int = 8,
    num_classes: int = 6,
    feature_dim: int = 256,
    min_steps: int = 96,
    max_steps: int = 192,
    fps: float = 30.0,
    feature_stride: int = 16,
    feature_window: int = 32,
    signal: float = 0.15,
    seed: int = 0,
) -> Path:
    """Write ``moments_{train,val,test_unannotated}.json`` and ``features/<clip_uid>.pt``.

    Args:
        out: dataset folder (created).
        num_train: training clips.
        num_val: validation clips.
        num_test: clips in the unannotated test file.
        num_classes: moment classes used (at most ``len(CLASS_NAMES)``).
        feature_dim: C of each ``[T, C]`` feature file.
        min_steps: shortest clip, in feature steps.
        max_steps: longest clip, in feature steps.
        fps: frame rate of the (imaginary) source video.
        feature_stride: frames between feature steps.
        feature_window: frames each feature step covers.
        signal: per-channel strength of a moment's prototype relative to unit noise.
        seed: everything is a function of it.

    Returns:
        ``out``.
    """
    if not 1 <= num_classes <= len(CLASS_NAMES):
        raise ValueError(f"num_classes must be in [1, {len(CLASS_NAMES)}], got {num_classes}")
    out = Path(out)
    features_dir = out / "features"
    features_dir.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)

    def unit(x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=-1, keepdim=True) * feature_dim**0.5

    shared = unit(torch.randn(feature_dim, generator=g))
    prototypes = unit(0.6 * shared + 0.8 * unit(torch.randn(num_classes, feature_dim, generator=g))) * signal
    distractors = unit(torch.randn(4, feature_dim, generator=g)) * signal
    clock = FeatureClock(fps, feature_stride, feature_window)
    step_sec, offset_sec = clock.step_sec, clock.offset_sec

    def clip_record(annotated: bool) -> dict:
        steps = int(torch.randint(min_steps, max_steps + 1, (), generator=g))
        duration = steps * step_sec
        video_start = float(torch.randint(0, 3000, (), generator=g)) * step_sec
        centres = offset_sec + torch.arange(steps) * step_sec
        features = torch.randn(steps, feature_dim, generator=g)
        features += torch.cumsum(0.05 * torch.randn(steps, feature_dim, generator=g), dim=0)
        labels, cursor = [], float(torch.rand((), generator=g)) * 4 * step_sec
        while True:
            length = float(4 + torch.randint(0, 40, (), generator=g)) * step_sec
            if cursor + length > duration:
                break
            label = int(torch.randint(0, num_classes, (), generator=g))
            start, end = cursor, cursor + length
            inside = (centres >= start) & (centres <= end)
            # strength peaks mid-moment, so boundaries are visible in the features
            ramp = 1 - (2 * (centres - (start + end) / 2) / max(length, 1e-6)).abs()
            features[inside] += (0.6 + 0.8 * ramp[inside, None]) * prototypes[label]
            labels.append(
                {
                    "start_time": round(start, 4),
                    "end_time": round(end, 4),
                    "video_start_time": round(video_start + start, 4),
                    "video_end_time": round(video_start + end, 4),
                    "video_start_frame": int((video_start + start) * fps),
                    "video_end_frame": int((video_start + end) * fps),
                    "label": CLASS_NAMES[label],
                    "primary": True,
                }
            )
            gap = float(2 + torch.randint(0, 24, (), generator=g)) * step_sec
            if gap > 8 * step_sec:  # an unannotated burst that is no moment
                burst = (centres > end + 2 * step_sec) & (centres < end + gap - 2 * step_sec)
                features[burst] += distractors[int(torch.randint(0, len(distractors), (), generator=g))]
            cursor = end + gap
        clip_uid = _uid(g)
        torch.save(features.half().float().clone(), features_dir / f"{clip_uid}.pt")
        record = {
            "clip_uid": clip_uid,
            "source_clip_uid": clip_uid,
            "video_start_sec": round(video_start, 4),
            "video_end_sec": round(video_start + duration, 4),
            "video_start_frame": int(video_start * fps),
            "video_end_frame": int((video_start + duration) * fps),
            "clip_start_sec": 0.0,
            "clip_end_sec": round(duration, 4),
        }
        if annotated:
            record["annotations"] = [{"annotator_uid": _uid(g), "labels": labels}]
        return record

    for split, count, file in (
        ("train", num_train, SPLIT_FILES["train"]),
        ("val", num_val, SPLIT_FILES["val"]),
        ("test", num_test, SPLIT_FILES["test"]),
    ):
        videos = [
            {"video_uid": _uid(g), "split": split, "clips": [clip_record(split != "test")]}
            for _ in range(count)
        ]
        document = {
            "version": "v2",
            "date": "synthetic",
            "description": f"vidlit synthetic Ego4D Moment Queries {split} split (not real data)",
            "manifest": "synthetic",
            "videos": videos,
        }
        # through the contract's schema: what is written is what a reader accepts
        validate(MQFile, document, out / file)
        (out / file).write_text(json.dumps(document, indent=1))
    return out
