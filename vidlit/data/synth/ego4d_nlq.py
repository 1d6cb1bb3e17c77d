"""A synthetic Ego4D Natural Language Queries dataset in the official annotation and feature layout.

Each video is a sequence of feature vectors (drifting noise) in which short *object events*
appear: for the event's duration the features carry the object's prototype, strongest mid-event.
Clips are windows of the videos; each clip holds several events of *different* objects, and each
of its queries asks about one of them by name ("Where did I put the scissors?"). A model that
ignores the query can at best pick one of a clip's events (Recall@1 at IoU 0.3 about
1 / ``events_per_clip``); reading the query identifies the event, so a VSLNet-style head that
fuses text and video reaches a high recall.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import torch

from vidlit.formats._schema import validate
from vidlit.formats.ego4d_nlq import FeatureClock, NLQFile

# (object, query template, Ego4D NLQ template name): a few of the real templates
OBJECTS = ("scissors", "phone", "keys", "knife", "cup", "wallet", "bottle", "screwdriver", "tape", "spoon")
TEMPLATES = (
    ("Where did I put the {}?", "Objects: Where is object X before / after event Y?"),
    ("Where was the {} before I picked it up?", "Objects: Where is object X before / after event Y?"),
    ("When did I last see the {}?", "Objects: When did I see object X?"),
    ("In what location did I see the {}?", "Objects: In what location did I see object X ?"),
)


def _uid(generator: torch.Generator) -> str:
    return str(uuid.UUID(bytes=bytes(torch.randint(0, 256, (16,), generator=generator).tolist()), version=4))


def write_ego4d_nlq(
    out: str | Path,
    num_train_videos: int = 64,
    num_val_videos: int = 16,
    num_test_videos: int = 4,
    clips_per_video: int = 2,
    events_per_clip: int = 3,
    num_objects: int = 8,
    feature_dim: int = 128,
    clip_steps: tuple[int, int] = (32, 64),
    fps: float = 30.0,
    feature_stride: int = 16,
    signal: float = 1.0,
    seed: int = 0,
) -> Path:
    """Write ``nlq_{train,val,test_unannotated}.json`` and ``features/<video_uid>.pt``.

    Args:
        out: dataset folder (created).
        num_train_videos: training videos.
        num_val_videos: validation videos.
        num_test_videos: videos in the unannotated test file.
        clips_per_video: clips cut from each video (with a gap between them).
        events_per_clip: object events, and queries, per clip.
        num_objects: objects used (at most ``len(OBJECTS)``).
        feature_dim: C of each ``[T, C]`` video feature file.
        clip_steps: (min, max) clip length in feature steps.
        fps: frame rate of the (imaginary) source video.
        feature_stride: frames between feature steps; step ``i`` starts at ``i * stride / fps`` s.
        signal: strength of an event's prototype relative to unit noise, per channel.
        seed: everything is a function of it.

    Returns:
        ``out``.
    """
    if not events_per_clip <= num_objects <= len(OBJECTS):
        raise ValueError(
            f"need events_per_clip <= num_objects <= {len(OBJECTS)}, got {events_per_clip}, {num_objects}"
        )
    out = Path(out)
    features_dir = out / "features"
    features_dir.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    step_sec = FeatureClock(fps, feature_stride).step_sec

    def unit(x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=-1, keepdim=True) * feature_dim**0.5

    # prototypes share a component, so "an object event is happening" is easy to see but which
    # object it is takes the query
    shared = unit(torch.randn(feature_dim, generator=g))
    prototypes = unit(0.5 * shared + 0.85 * unit(torch.randn(num_objects, feature_dim, generator=g))) * signal

    def randint(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (), generator=g))

    def video_record(split: str) -> dict:
        video_uid = _uid(g)
        lengths = [randint(*clip_steps) for _ in range(clips_per_video)]
        gaps = [randint(4, 24) for _ in range(clips_per_video + 1)]
        total = sum(lengths) + sum(gaps)
        features = torch.randn(total, feature_dim, generator=g)
        features += torch.cumsum(0.03 * torch.randn(total, feature_dim, generator=g), dim=0)
        clips, cursor = [], gaps[0]
        for length, gap in zip(lengths, gaps[1:]):
            clip_first = cursor
            video_start = clip_first * step_sec
            duration = length * step_sec
            unit_sec = duration / (length + 1)
            objects = torch.randperm(num_objects, generator=g)[:events_per_clip].tolist()
            # events in order along the clip, each in its own slot of the clip
            slot = length // events_per_clip
            queries = []
            for n, obj in enumerate(objects):
                event_len = randint(max(2, slot // 6), max(3, slot * 2 // 3))
                first = n * slot + randint(0, slot - event_len)
                steps = torch.arange(first, first + event_len)
                ramp = 1 - (2 * (steps.float() + 0.5 - first - event_len / 2) / event_len).abs()
                features[clip_first + steps] += (0.5 + 0.5 * ramp[:, None]) * prototypes[obj]
                # the clip's features are the ``length + 1`` steps covering [0, duration] (the
                # baseline's floor / ceil + 1 cut), a grid of ``duration / (length + 1)`` s units:
                # answer windows lie on that grid so the span labels decode back exactly
                start, end = first * unit_sec, (first + event_len) * unit_sec
                text, template = TEMPLATES[randint(0, len(TEMPLATES) - 1)]
                query = {"query": text.format(OBJECTS[obj]), "template": template, "slot_x": OBJECTS[obj]}
                if split != "test":
                    query = {
                        "clip_start_sec": round(start, 8),
                        "clip_end_sec": round(end, 8),
                        "video_start_sec": round(video_start + start, 8),
                        "video_end_sec": round(video_start + end, 8),
                        "video_start_frame": int(round((video_start + start) * fps)),
                        "video_end_frame": int(round((video_start + end) * fps)),
                        **query,
                        "verb_x": "put",
                        "slot_y": None,
                        "verb_y": None,
                        "raw_tags": [template, OBJECTS[obj], "put"],
                    }
                queries.append(query)
            clip_uid = _uid(g)
            clips.append(
                {
                    "clip_uid": clip_uid,
                    "video_start_sec": round(video_start, 8),
                    "video_end_sec": round(video_start + duration, 8),
                    "video_start_frame": int(round(video_start * fps)),
                    "video_end_frame": int(round((video_start + duration) * fps)),
                    "clip_start_sec": 0.0,
                    "clip_end_sec": round(duration, 8),
                    "source_clip_uid": clip_uid,
                    "annotations": [{"language_queries": queries, "annotation_uid": _uid(g)}],
                }
            )
            cursor += length + gap
        torch.save(features.half().float().clone(), features_dir / f"{video_uid}.pt")
        return {"video_uid": video_uid, "split": split, "clips": clips}

    for split, count, file in (
        ("train", num_train_videos, "nlq_train.json"),
        ("val", num_val_videos, "nlq_val.json"),
        ("test", num_test_videos, "nlq_test_unannotated.json"),
    ):
        document = {
            "version": "v1",
            "date": "synthetic",
            "description": f"vidlit synthetic Ego4D NLQ {split} split (not real data)",
            "manifest": "synthetic",
            "videos": [video_record(split) for _ in range(count)],
        }
        # through the contract's schema: what is written is what a reader accepts
        validate(NLQFile, document, out / file)
        (out / file).write_text(json.dumps(document, indent=1))
    return out
