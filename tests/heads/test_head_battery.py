"""One battery over every vidlit head: forward, loss, backward, predict, bf16, state-dict round trip.

Each case builds a tiny head and takes its batch from the family's own pipeline: the synthetic
writer (``vidlit.data.synth``) writes a few samples once per session into a tmp folder, and the
family's data module reads them and batches them with its own collate (and, for raw video, its
on-device transform), so the battery checks the contract between reader and head, not a
hand-built imitation of it. Heads that take backbone features get random features of the shape
the backbone would give for that batch. The checks are the head contract
(``vidlit.heads.base.TaskHead``): ``loss`` returns a finite scalar ``"loss"`` whose gradient
reaches every trainable parameter used, ``predict`` returns one list entry per sample (or per
item the task scores), ``metrics()`` is a MetricCollection, the head runs under CPU bf16
autocast, and a state dict loaded into a fresh instance reproduces the eval outputs exactly.
A head exported by ``vidlit.heads`` without a case fails :func:`test_every_head_has_a_case`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torchmetrics import MetricCollection

import vidlit.heads
from vidlit.heads import (
    ActionFormerHead,
    AttentiveProbeHead,
    AVParsingHead,
    HandForecastHead,
    LinearProbeHead,
    LorisHead,
    MACILSDHead,
    MMPyramidHead,
    MPNHead,
    MuDaRHead,
    ShortTermAnticipationHead,
    StateChangeDETRHead,
    TaskHead,
    VSLNetHead,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _first(loader) -> dict:
    return next(iter(loader))


# -- one tiny sample per family: synth writer -> data module -> its collate (and device transform) ---


def _mq(root: Path) -> tuple[Any, dict]:
    from vidlit.data import Ego4DMQ
    from vidlit.data.synth.ego4d_mq import write_ego4d_mq

    write_ego4d_mq(
        root, num_train=4, num_val=2, num_test=1, num_classes=3, feature_dim=16, min_steps=32, max_steps=48
    )
    dm = Ego4DMQ(root=str(root), feature_dim=16, batch_size=2)
    dm.setup("fit")
    return dm, _first(dm.train_dataloader())


def _video_cls(root: Path) -> tuple[Any, dict]:
    from vidlit.data import VideoListDataModule
    from vidlit.data.synth.videos import write_synthetic_video_list

    write_synthetic_video_list(root, num_videos=16, num_frames=8, size=32)
    dm = VideoListDataModule(root=str(root), num_frames=4, size=16, short_side=16, batch_size=4)
    dm.setup("fit")
    return dm, dm.on_after_batch_transfer(_first(dm.val_dataloader()), 0)


def _xd_violence(root: Path) -> tuple[Any, dict]:
    from vidlit.data import XDViolence
    from vidlit.data.synth.xd_violence import write_xd_violence

    write_xd_violence(
        root, num_train=4, num_test=2, feature_dim=24, audio_dim=8, min_snippets=8, max_snippets=12
    )
    dm = XDViolence(root=str(root), feature_dim=24, audio_dim=8, batch_size=4)
    dm.setup("fit")
    return dm, _first(dm.train_dataloader())


def _ave(root: Path) -> tuple[Any, dict]:
    from vidlit.data import AVEDataModule
    from vidlit.data.synth.ave import write_ave

    write_ave(root, num_categories=2, videos_per_category=(1, 1, 1), num_noisy=0, visual_dim=16)
    dm = AVEDataModule(root=str(root), feature_dim=16, batch_size=2)
    dm.setup("fit")
    return dm, _first(dm.train_dataloader())


def _llp(root: Path) -> tuple[Any, dict]:
    from vidlit.data import LLPVideoParsing
    from vidlit.data.synth.llp import write_llp

    write_llp(
        root, num_train=2, num_val=2, num_test=1, num_classes=5, audio_dim=8, visual_dim=8, motion_dim=4
    )
    dm = LLPVideoParsing(root=str(root), audio_dim=8, feature_dim=12, motion_dim=4, batch_size=2)
    dm.setup("fit")
    return dm, _first(dm.val_dataloader())


def _music_dance(root: Path) -> tuple[Any, dict]:
    from vidlit.data import MusicDanceDataModule
    from vidlit.data.synth.music_dance import write_music_dance

    write_music_dance(
        root,
        num_genres=2,
        train_musics=1,
        eval_musics=1,
        train_dances=2,
        eval_dances=1,
        duration=2.0,
        size=32,
    )
    dm = MusicDanceDataModule(root=str(root), clip_seconds=1, feature_dim=16, frame_size=32, batch_size=4)
    dm.setup("fit")
    return dm, _first(dm.train_dataloader())


def _nlq(root: Path) -> tuple[Any, dict]:
    from vidlit.data import Ego4DNLQ
    from vidlit.data.synth.ego4d_nlq import write_ego4d_nlq

    write_ego4d_nlq(root, num_train_videos=2, num_val_videos=1, num_test_videos=1, feature_dim=12)
    dm = Ego4DNLQ(root=str(root), feature_dim=12, max_len=32, batch_size=2)
    dm.setup("fit")
    return dm, _first(dm.train_dataloader())


def _scod(root: Path) -> tuple[Any, dict]:
    from vidlit.data import Ego4DSCOD
    from vidlit.data.synth.ego4d_scod import write_ego4d_scod

    write_ego4d_scod(root, num_train=2, num_val=1, num_test=1, size=32)
    dm = Ego4DSCOD(root=str(root), num_frames=8, frame_stride=2, size=32, batch_size=2)
    dm.setup("fit")
    return dm, dm.on_after_batch_transfer(_first(dm.val_dataloader()), 0)


def _sta(root: Path) -> tuple[Any, dict]:
    from vidlit.data import Ego4DSTA
    from vidlit.data.synth.ego4d_sta import write_ego4d_sta

    write_ego4d_sta(root, num_train=2, num_val=2, num_test=1, size=48)
    dm = Ego4DSTA(
        str(root), detections="object_detections.json", num_frames=8, size=32, batch_size=2
    )
    dm.setup("fit")
    return dm, dm.on_after_batch_transfer(_first(dm.val_dataloader()), 0)


def _fhp(root: Path) -> tuple[Any, dict]:
    from vidlit.data import Ego4DFHP
    from vidlit.data.synth.ego4d_fhp import write_ego4d_fhp

    write_ego4d_fhp(root, num_train=2, num_val=1, num_test=1, size=32)
    dm = Ego4DFHP(root=str(root), size=32, num_frames=8, sampling_rate=4, batch_size=2)
    dm.setup("fit")
    return dm, dm.on_after_batch_transfer(_first(dm.train_dataloader()), 0)


def _loris(root: Path) -> tuple[Any, dict]:
    from vidlit.data.loris import LorisDataModule
    from vidlit.data.synth.loris import write_loris

    write_loris(root, num_train=2, num_test=2, seconds=2, sample_rate=1024, feature_dim=16)
    dm = LorisDataModule(str(root), sample_rate=1024, segment_samples=1024, feature_dim=16, batch_size=2)
    dm.setup("fit")
    return dm, _first(dm.val_dataloader())


FAMILIES: dict[str, Callable[[Path], tuple[Any, dict]]] = {
    "ego4d_mq": _mq,
    "video_cls": _video_cls,
    "xd_violence": _xd_violence,
    "ave": _ave,
    "llp": _llp,
    "music_dance": _music_dance,
    "ego4d_nlq": _nlq,
    "ego4d_scod": _scod,
    "ego4d_sta": _sta,
    "ego4d_fhp": _fhp,
    "loris": _loris,
}


class SampleData:
    """Each family's (data module, batch), written and read on first use, then kept for the session."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._cache: dict[str, tuple[Any, dict]] = {}

    def __call__(self, family: str) -> tuple[Any, dict]:
        if family not in self._cache:
            self._cache[family] = FAMILIES[family](self.folder / family)
        return self._cache[family]


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory) -> SampleData:
    return SampleData(tmp_path_factory.mktemp("head_battery"))


def _tokens(video: torch.Tensor, patch: int = 8, tubelet: int = 2) -> int:
    """Tokens a ViT with this patch and tubelet gives for a ``[b, 3, t, h, w]`` clip."""
    _, _, t, h, w = video.shape
    return (t // tubelet) * (h // patch) * (w // patch)


# -- cases: family, head builder (sized from the data module), features from the batch ---------------

Case = tuple[str, type[TaskHead], Callable[[Any], TaskHead], Callable[[dict], torch.Tensor]]

CASES: dict[str, Case] = {
    "actionformer": (
        "ego4d_mq",
        ActionFormerHead,
        lambda dm: ActionFormerHead(
            16, dm.num_classes, embed_dim=32, head_dim=32, num_heads=4, levels=3, window=5
        ),
        lambda batch: batch["features"],
    ),
    "linear_probe": (
        "video_cls",
        LinearProbeHead,
        lambda dm: LinearProbeHead(in_dim=16, num_classes=dm.num_classes),
        lambda batch: torch.randn(len(batch["video_ids"]), 16),
    ),
    "attentive_probe": (
        "video_cls",
        AttentiveProbeHead,
        lambda dm: AttentiveProbeHead(in_dim=16, num_classes=dm.num_classes, num_heads=4),
        lambda batch: torch.randn(len(batch["video_ids"]), _tokens(batch["video"]), 16),
    ),
    "macil_sd": (
        "xd_violence",
        MACILSDHead,
        lambda dm: MACILSDHead(in_dim=24, audio_dim=8, hidden_dim=16, ffn_dim=16, num_heads=2),
        lambda batch: batch["features"],
    ),
    "mpn": (
        "ave",
        MPNHead,
        lambda dm: MPNHead(in_dim=16, num_classes=dm.num_classes, dim=16, num_heads=2, attention_dim=8),
        lambda batch: batch["audio"],
    ),
    "mm_pyramid": (
        "ave",
        MMPyramidHead,
        lambda dm: MMPyramidHead(in_dim=16, num_classes=dm.num_classes, dim=16, num_heads=2, attention_dim=8),
        lambda batch: batch["audio"],
    ),
    "av_parsing": (
        "llp",
        AVParsingHead,
        lambda dm: AVParsingHead(
            in_dim=12, num_classes=dm.num_classes, audio_dim=8, embed_dim=16, num_levels=2
        ),
        lambda batch: batch["visual"],
    ),
    "mudar": (
        "music_dance",
        MuDaRHead,
        lambda dm: MuDaRHead(
            in_dim=16, num_classes=dm.num_classes, dim=16, embed_dim=8, time_bins=10, bin_dim=4
        ),
        lambda batch: batch["motion"],
    ),
    "nlq_vslnet": (
        "ego4d_nlq",
        VSLNetHead,
        lambda dm: VSLNetHead(
            12, dim=16, num_heads=2, max_pos_len=32, conv_layers=1, text_encoder="text_test"
        ),
        lambda batch: batch["features"],
    ),
    "scod_detr": (
        "ego4d_scod",
        StateChangeDETRHead,
        lambda dm: StateChangeDETRHead(in_dim=16, hidden=32, num_queries=4, num_layers=2, patch_size=8),
        lambda batch: torch.randn(len(batch["video_ids"]), _tokens(batch["video"]), 16),
    ),
    "scod_detr_refined": (
        "ego4d_scod",
        StateChangeDETRHead,
        lambda dm: StateChangeDETRHead(
            in_dim=16, hidden=32, num_queries=4, num_layers=2, patch_size=8, refine_stride=2
        ),
        lambda batch: torch.randn(len(batch["video_ids"]), _tokens(batch["video"]), 16),
    ),
    "sta": (
        "ego4d_sta",
        ShortTermAnticipationHead,
        lambda dm: ShortTermAnticipationHead(
            in_dim=64, num_classes=dm.num_classes, num_verbs=dm.num_verbs, hidden_dim=32
        ),
        lambda batch: torch.randn(len(batch["video_ids"]), _tokens(batch["video"]), 64),
    ),
    "fhp": (
        "ego4d_fhp",
        HandForecastHead,
        lambda dm: HandForecastHead(16, hidden=32, coord_scale=64.0),
        lambda batch: torch.randn(len(batch["video_ids"]), _tokens(batch["video"]), 16),
    ),
    "fhp_soft_argmax": (
        "ego4d_fhp",
        HandForecastHead,
        lambda dm: HandForecastHead(16, hidden=32, coord_scale=64.0, readout="soft_argmax"),
        lambda batch: torch.randn(len(batch["video_ids"]), _tokens(batch["video"]), 16),
    ),
    "loris": (
        "loris",
        LorisHead,
        lambda dm: LorisHead(
            16, dm.num_classes, patch=8, channels=(8, 16), factors=(4,), attn_levels=(1,), cond_dim=16,
            num_heads=2, sampling_steps=2, progress=False,
        ),  # fmt: skip
        lambda batch: batch["audio"],
    ),
}


def _build(name: str, sample_data: SampleData) -> tuple[TaskHead, torch.Tensor, dict, Callable[[], TaskHead]]:
    family, cls, make_head, make_features = CASES[name]
    dm, batch = sample_data(family)
    torch.manual_seed(0)
    head = make_head(dm)
    assert type(head) is cls
    features = make_features(batch)
    return head, features, batch, lambda: make_head(dm)


def _concrete_heads() -> set[type]:
    """Every TaskHead subclass ``vidlit.heads`` exports that a user can instantiate (not a base class)."""
    heads = set()
    for name in vidlit.heads.__all__:
        cls = getattr(vidlit.heads, name)
        if inspect.isclass(cls) and issubclass(cls, TaskHead) and cls is not TaskHead:
            if cls.forward is not TaskHead.forward and not inspect.isabstract(cls):
                heads.add(cls)
    return heads


def test_every_head_has_a_case():
    """A new head exported by vidlit.heads needs a case here (with its family's synth + collate)."""
    covered = {cls for _, cls, _, _ in CASES.values()}
    missing = sorted(cls.__name__ for cls in _concrete_heads() - covered)
    assert not missing, f"heads without a battery case: {missing}"
    assert set(FAMILIES) >= {family for family, _, _, _ in CASES.values()}


def _tensors(x) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, dict):
        return [t for v in x.values() for t in _tensors(v)]
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in _tensors(v)]
    return [t for v in vars(x).values() for t in _tensors(v)] if hasattr(x, "__dict__") else []


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_loss_backward_predict(name, sample_data):
    head, features, batch, _ = _build(name, sample_data)
    assert isinstance(head, TaskHead) and head.input and head.feature_layout
    head.train()
    outputs = head(features, batch)
    losses = head.loss(outputs, batch)
    loss = losses["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in head.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)  # zero-initialized output layers may give zeros
    assert any(g.abs().sum() > 0 for g in grads)
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    head.eval()
    with torch.no_grad():
        predictions = head.predict(head(features, batch), batch)
    assert isinstance(predictions, list) and len(predictions) == len(batch["video_ids"])
    assert isinstance(head.metrics(), MetricCollection)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bf16_autocast(name, sample_data):
    head, features, batch, _ = _build(name, sample_data)
    head.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = head(features, batch)
        loss = head.loss(outputs, batch)["loss"]
        head.predict(outputs, batch)
    assert torch.isfinite(loss.float())
    assert all(torch.isfinite(t.float()).all() for t in _tensors(outputs) if t.is_floating_point())


@pytest.mark.parametrize("name", sorted(CASES))
def test_state_dict_round_trip(name, sample_data):
    head, features, batch, make_head = _build(name, sample_data)
    head.eval()
    torch.manual_seed(123)  # a fresh instance with other weights
    fresh = make_head()
    fresh.load_state_dict(head.state_dict())
    fresh.eval()
    with torch.no_grad():
        expected = _tensors(head(features, batch))
        actual = _tensors(fresh(features, batch))
    assert len(expected) == len(actual) > 0
    for a, b in zip(actual, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
