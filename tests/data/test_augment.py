"""On-device video augmentations: cutmix / mixup on [b, c, t, h, w], per-clip RandAugment and erasing."""

from __future__ import annotations

import functools
import math
from collections import Counter

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidlit.backbones import create_backbone
from vidlit.data.augment import (
    ClipErasing,
    ClipRandAugment,
    MixupCutmix,
    RepeatAugSampler,
    VideoAugment,
    smooth_one_hot,
)
from vidlit.data.base import VidlitDataModule
from vidlit.heads import HandForecastHead, LinearProbeHead
from vidlit.tasks import TaskModule


def _rectangle(mask: torch.Tensor) -> bool:
    rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
    box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return bool(box.all()) and int(box.sum()) == int(mask.sum())


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_pastes_one_spatial_box_of_another_clip_over_all_frames(seed):
    torch.manual_seed(seed)
    b, c, t, h, w, k = 4, 3, 5, 32, 24, 7
    video = torch.rand(b, c, t, h, w)
    labels = torch.tensor([0, 3, 5, 6])
    mixed, soft = MixupCutmix(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)(video, labels, k)
    assert mixed.shape == video.shape and soft.shape == (b, k)
    partner = video.roll(-(b // 2), 0)  # clip i with clip (i + b // 2) mod b
    changed = mixed != video  # [b c t h w]
    areas = []
    for i in range(b):
        box = changed[i].any(0).any(0)  # [h, w]
        # one box, the same in every frame and channel, holding the partner's pixels there
        assert torch.equal(changed[i], box.expand(c, t, h, w))
        assert torch.equal(mixed[i][..., box], partner[i][..., box])
        assert torch.equal(mixed[i][..., ~box], video[i][..., ~box])
        if box.any():
            assert _rectangle(box)
        areas.append(box.float().mean())
    # one draw per batch: the same box for every clip, and targets mixed by its area
    assert len({round(float(a), 6) for a in areas}) == 1
    area = areas[0]
    for i in range(b):
        expected = (1 - area) * F.one_hot(labels[i], k) + area * F.one_hot(labels[(i + b // 2) % b], k)
        assert torch.allclose(soft[i], expected.float(), atol=1e-6)


def test_mixup_is_a_convex_combination_of_two_clips_and_their_targets():
    torch.manual_seed(0)
    video, labels, k = torch.randn(3, 3, 4, 8, 8), torch.tensor([1, 2, 0]), 4
    mixed, soft = MixupCutmix(mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0)(video, labels, k)
    lam = soft[0, labels[0]]
    assert 0 <= lam <= 1
    partner = [1, 2, 0]  # (i + 3 // 2) mod 3
    assert torch.allclose(mixed, lam * video + (1 - lam) * video[partner], atol=1e-6)
    assert torch.allclose(soft, lam * F.one_hot(labels, k) + (1 - lam) * F.one_hot(labels[partner], k))


@pytest.mark.parametrize("videos", [4, 3, 5, 2])
@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mix_targets_follow_timms_formula_and_never_pair_a_clip_with_its_repeated_copy(kind, videos):
    """Repeated augmentation puts the copies of a video next to each other: [a, a, b, b, ...].
    torchvision's roll(1) mixed half the clips with their own copy and timm's flip(0) the middle
    two when b = 2 mod 4 (3 or 5 videos here): their targets stayed one-hot."""
    timm_mixup = pytest.importorskip("timm.data.mixup")
    torch.manual_seed(0)
    k, smoothing = 6, 0.1
    labels = torch.arange(videos).repeat_interleave(2)
    b = labels.numel()
    video = torch.rand(b, 3, 1, 16, 16)
    alphas = {"mixup_alpha": 0.8, "cutmix_alpha": 0.0} if kind == "mixup" else {"mixup_alpha": 0.0}
    mixed, soft = MixupCutmix(**alphas, label_smoothing=smoothing)(video, labels, k)
    lam = float(soft[0, labels[0]] - smoothing / k) / (1 - smoothing)  # weight of the clip itself
    partner = (torch.arange(b) + b // 2) % b
    # timm's mixup_target, lam * smooth(y) + (1 - lam) * smooth(y.flip(0)), with the partner's
    # labels in place of timm's flipped ones
    timm_target = timm_mixup.mixup_target(labels, k, lam, smoothing)
    expected = timm_target + (1 - lam) * (
        _smooth(labels[partner], k, smoothing) - _smooth(labels.flip(0), k, smoothing)
    )
    assert torch.allclose(soft, expected, atol=1e-6)
    if kind == "mixup":
        assert torch.allclose(mixed, video * lam + video[partner] * (1 - lam), atol=1e-6)
    else:
        assert torch.equal(mixed[video != mixed], video[partner][video != mixed])
    assert 0 < lam < 1
    # every target mixes two classes: no clip met the other copy of its own video
    assert (soft > smoothing / k + 1e-6).sum(-1).eq(2).all(), soft


def _smooth(labels: torch.Tensor, k: int, smoothing: float) -> torch.Tensor:
    return F.one_hot(labels, k).float() * (1 - smoothing) + smoothing / k


def test_label_smoothing_and_switch():
    soft = smooth_one_hot(torch.tensor([[0.7, 0.3, 0.0, 0.0]]), 0.1)
    assert torch.allclose(soft, torch.tensor([[0.655, 0.295, 0.025, 0.025]]))
    torch.manual_seed(0)
    mix = MixupCutmix()  # VideoMAE: mixup 0.8, cutmix 1.0, switch 0.5
    kinds = [mix.choose() for _ in range(2000)]
    assert 0.45 < kinds.count("cutmix") / len(kinds) < 0.55 and set(kinds) == {"mixup", "cutmix"}
    _, soft = mix(torch.rand(2, 3, 2, 8, 8), torch.tensor([0, 1]), 5)
    assert torch.allclose(soft.sum(-1), torch.ones(2)) and soft.min() >= 0.1 / 5 - 1e-7
    with pytest.raises(ValueError, match="one > 0"):
        MixupCutmix(0.0, 0.0)


@pytest.mark.parametrize("seed", range(8))
def test_rand_augment_applies_the_same_ops_to_every_frame(seed):
    """A clip's frames each get exactly what that frame alone gets under the same draw."""
    augment = ClipRandAugment(num_ops=4, magnitude=7, magnitude_std=0.5, prob=1.0)
    clip = torch.rand(6, 3, 20, 20)
    torch.manual_seed(seed)
    out = augment(clip)
    for f in range(clip.shape[0]):
        torch.manual_seed(seed)
        assert torch.allclose(augment(clip[f : f + 1]), out[f : f + 1], atol=1e-6)
    same = clip[:1].expand(4, -1, -1, -1).clone()  # identical frames stay identical
    out = augment(same)
    assert all(torch.equal(out[0], out[f]) for f in range(4))


def test_rand_augment_draws_timm_magnitudes():
    torch.manual_seed(0)
    augment = ClipRandAugment(num_ops=4, magnitude=7, magnitude_std=0.5, prob=0.5)
    draws = [augment.draw() for _ in range(400)]
    assert 1.8 < sum(map(len, draws)) / len(draws) < 2.2  # each of 4 ops with probability 0.5
    levels = torch.tensor([level for draw in draws for _, level, _, _ in draw])
    assert abs(levels.mean() - 7) < 0.1 and abs(levels.std() - 0.5) < 0.1
    changed = sum(not torch.equal(augment(clip := torch.rand(2, 3, 16, 16)), clip) for _ in range(20))
    assert changed >= 15
    with pytest.raises(ValueError, match="magnitude in"):
        ClipRandAugment(magnitude=11)


def test_rand_augment_is_timms_increasing_set_with_its_magnitudes():
    """VideoMAE's rand-m7-n4-mstd0.5-inc1 is timm's ``_RAND_INCREASING_TRANSFORMS``: checked op by op
    at m7 against PIL, on which timm's ops run (torchvision's own table keeps 5 bits in Posterize
    at m7 where timm keeps 2, and has neither Invert nor SolarizeAdd)."""
    from PIL import Image, ImageOps

    augment = ClipRandAugment(num_ops=1, magnitude=7, magnitude_std=0, prob=1)
    space = augment._AUGMENTATION_SPACE
    assert set(space) == {
        "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
        "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY",
    }  # fmt: skip
    ramp = torch.arange(256, dtype=torch.uint8).repeat(3, 4, 1)[None]  # [t=1, c, h, w] every grey level
    image = Image.fromarray(ramp[0].permute(1, 2, 0).numpy())

    def run(name: str, clip: torch.Tensor = ramp) -> np.ndarray:
        out = augment.apply(clip, [(name, 7.0, False, space[name][0])])
        return out[0].permute(1, 2, 0).numpy()

    np.testing.assert_array_equal(run("Posterize"), np.asarray(ImageOps.posterize(image, 2)))
    np.testing.assert_array_equal(run("Solarize"), np.asarray(ImageOps.solarize(image, 77)))
    np.testing.assert_array_equal(run("Invert"), np.asarray(ImageOps.invert(image)))
    added = image.point([min(255, i + 77) if i < 128 else i for i in range(256)] * 3)  # timm's lut
    np.testing.assert_array_equal(run("SolarizeAdd"), np.asarray(added))
    floats = augment.apply(ramp / 255, [("SolarizeAdd", 7.0, False, space["SolarizeAdd"][0])])
    np.testing.assert_allclose(floats[0].permute(1, 2, 0).numpy() * 255, np.asarray(added), atol=1e-3)
    # translation is 0.45 of the side at m10 (0.315 at m7), uncovering timm's grey (128)
    assert float(space["TranslateX"][0](101, 32, 200)[70]) == pytest.approx(0.315 * 200)
    shifted = run("TranslateX", torch.zeros(1, 3, 4, 200, dtype=torch.uint8))
    assert (shifted[:, :63] == 128).all() and (shifted[:, 63:] == 0).all()


def test_erasing_fills_one_box_per_clip_in_every_frame():
    torch.manual_seed(0)
    video = torch.zeros(200, 3, 4, 16, 16)
    out = ClipErasing(prob=0.25)(video)
    erased = 0
    for clip in out:
        box = (clip != 0).any(0).any(0)
        if box.any():
            erased += 1
            assert _rectangle(box) and box.float().mean() <= 1 / 3 + 0.05
            assert torch.equal(clip[:, 0], clip[:, 3])  # the same noise in every frame
    assert 30 < erased < 70  # 0.25 of 200
    assert torch.equal(video, torch.zeros_like(video))  # input untouched


def test_erasing_per_frame_is_videomaes():
    torch.manual_seed(0)
    out = ClipErasing(prob=0.25, per_frame=True)(torch.zeros(50, 3, 8, 16, 16))
    erased = (out != 0).flatten(3).any(-1).any(1)  # [b, t]
    assert 0.15 < erased.float().mean() < 0.35  # frames erased on their own, 0.25 of them
    assert (erased.any(1) & ~erased.all(1)).any()  # some clips only partly erased


def test_video_augment_batch_and_soft_target_loss():
    torch.manual_seed(0)
    batch = {"video": torch.randn(4, 3, 4, 16, 16), "labels": torch.tensor([0, 1, 2, 3])}
    out = VideoAugment.videomae()(batch, num_classes=5)
    assert out["video"].shape == batch["video"].shape and out["soft_labels"].shape == (4, 5)
    assert "soft_labels" not in batch and not torch.equal(out["video"], batch["video"])
    head = LinearProbeHead(8, 5, label_smoothing=0.1)
    logits = torch.randn(4, 5)
    loss = head.loss(logits, out)["loss"]
    assert torch.allclose(loss, -(out["soft_labels"] * logits.log_softmax(-1)).sum(-1).mean())
    hard = {
        "labels": batch["labels"],
        "soft_labels": smooth_one_hot(F.one_hot(batch["labels"], 5).float(), 0.1),
    }
    assert torch.allclose(
        head.loss(logits, hard)["loss"], head.loss(logits, {"labels": batch["labels"]})["loss"]
    )
    with pytest.raises(ValueError, match="normalized float clips"):
        VideoAugment()(
            {"video": torch.zeros(2, 4, 16, 16, 3, dtype=torch.uint8), "labels": batch["labels"]}, 5
        )


def test_video_augment_takes_the_data_modules_normalization(tmp_path):
    from vidlit.data import VideoListDataModule

    data = VideoListDataModule(root=str(tmp_path), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    module = TaskModule(LinearProbeHead(8, 3), augment=VideoAugment.videomae())
    module.trainer = L.Trainer(logger=False)
    module.trainer.datamodule = data
    module.on_fit_start()
    assert module.augment.mean == (0.5,) * 3 and module.augment.std == (0.25,) * 3
    fixed = VideoAugment(mean=(0.1, 0.2, 0.3), std=(1, 1, 1))
    module = TaskModule(LinearProbeHead(8, 3), augment=fixed)
    module.trainer = L.Trainer(logger=False)
    module.trainer.datamodule = data
    module.on_fit_start()
    assert fixed.mean == (0.1, 0.2, 0.3)  # given explicitly: kept
    with pytest.raises(ValueError, match="one value per channel"):
        VideoAugment(mean=(0.5,), std=(0.2, 0.2))


def _batch(i: int) -> dict:
    labels = torch.tensor([i % 3, (i + 1) % 3])
    targets = [{"video_id": f"v{i}{j}", "label": int(y)} for j, y in enumerate(labels)]
    return {
        "video": torch.randn(2, 3, 4, 32, 32),
        "labels": labels,
        "targets": targets,
        "video_ids": [t["video_id"] for t in targets],
    }


def test_task_module_augments_training_batches_only(tmp_path):
    seen = []

    class Recording(VideoAugment):
        def forward(self, batch, num_classes):
            out = super().forward(batch, num_classes)
            seen.append(out["soft_labels"].shape)
            return out

    backbone = create_backbone("vit_test", img_size=32, num_frames=4)
    module = TaskModule(LinearProbeHead(64, 3), backbone=backbone, augment=Recording.videomae())
    trainer = L.Trainer(
        max_epochs=1, default_root_dir=tmp_path, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader([_batch(i) for i in range(3)], batch_size=None)
    trainer.fit(module, loader, torch.utils.data.DataLoader([_batch(9)], batch_size=None))
    assert seen == [(2, 3)] * 3  # three training batches, no validation batch
    with pytest.raises(ValueError, match="HandForecastHead has no num_classes"):
        TaskModule(HandForecastHead(in_dim=8), augment=VideoAugment())


# -- repeated augmentation ----------------------------------------------------------------------


@pytest.mark.parametrize(("n", "world"), [(12, 4), (10, 3), (7, 1)])
def test_repeat_aug_sampler_draws_each_index_num_repeats_times_across_ranks(n, world):
    epoch = {"now": 0}
    ranks = [
        RepeatAugSampler(
            range(n), num_repeats=2, num_replicas=world, rank=r, seed=3, epoch_fn=lambda: epoch["now"]
        )
        for r in range(world)
    ]
    streams = [list(s) for s in ranks]
    assert all(len(s) == len(ranks[0]) == math.ceil(2 * n / world) for s in streams)  # equal per rank
    drawn = Counter(i for s in streams for i in s)
    padding = world * len(streams[0]) - 2 * n
    assert sorted(drawn) == list(range(n)) and sum(drawn.values()) == 2 * n + padding
    assert sum(c - 2 for c in drawn.values()) == padding and min(drawn.values()) == 2
    if world >= 2 and padding == 0:  # the two copies of an index go to two different ranks
        where = {i: [r for r, s in enumerate(streams) if i in s] for i in range(n)}
        assert all(len(set(w)) == 2 for w in where.values())
    # epoch-seeded: a fresh sampler reproduces an epoch; the next epoch is another order
    again = RepeatAugSampler(range(n), num_repeats=2, num_replicas=world, rank=0, seed=3, epoch_fn=lambda: 0)
    assert list(again) == streams[0]
    epoch["now"] = 1
    assert [list(s) for s in ranks] != streams


def test_repeat_aug_sampler_shortened_epoch_is_timms():
    """shorten: plain sampling's epoch length, each drawn index still twice in a row across ranks."""
    ranks = [
        RepeatAugSampler(range(16), num_repeats=2, shorten=True, num_replicas=2, rank=r, seed=0)
        for r in (0, 1)
    ]
    streams = [list(s) for s in ranks]
    assert [len(s) for s in streams] == [8, 8] and len(ranks[0]) == 8
    assert streams[0] == streams[1]  # [a, a, b, b, ...] dealt round-robin: both ranks see a, b, ...
    ranks[0].set_epoch(1)  # without epoch_fn, DistributedSampler's set_epoch
    assert list(ranks[0]) != streams[0]
    with pytest.raises(ValueError, match="num_repeats >= 1"):
        RepeatAugSampler(range(4), num_repeats=0)


def test_data_module_takes_the_repeat_aug_sampler():
    class Numbers(VidlitDataModule):
        def dataset(self, split):
            return list(range(10))

        def _collate(self):
            return torch.tensor

    data = Numbers(batch_size=4)
    data.train_sampler = functools.partial(RepeatAugSampler, num_repeats=2)
    data.setup("fit")
    loader = data.train_dataloader()
    assert isinstance(loader.sampler, RepeatAugSampler)
    seen = Counter(int(i) for batch in loader for i in batch)
    assert seen == Counter({i: 2 for i in range(10)})
