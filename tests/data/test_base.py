"""The shared data-module machinery: epoch-seeded shuffling and the datasets' (seed, epoch, key) draws."""

from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader, Dataset

from vidlit.data.base import EpochSeeded, EpochShuffleSampler, global_seed


def test_order_is_a_function_of_seed_and_epoch():
    epoch = {"now": 0}
    sampler = EpochShuffleSampler(range(50), seed=7, epoch_fn=lambda: epoch["now"])
    first = list(sampler)
    assert sorted(first) == list(range(50)) and first != list(range(50))
    epoch["now"] = 1
    second = list(sampler)
    assert second != first
    resumed = EpochShuffleSampler(range(50), seed=7, epoch_fn=lambda: 1)
    assert list(resumed) == second  # a fresh sampler (a resumed run) reproduces epoch 1
    assert list(EpochShuffleSampler(range(50), seed=8, epoch_fn=lambda: 1)) != second


# -- EpochSeeded: the datasets' shared (seed, epoch, key) randomness ------------------------------


def _datasets(seed):
    from vidlit.data.ego4d_mq import MomentQueriesDataset
    from vidlit.data.ego4d_scod import StateChangeDataset
    from vidlit.data.internvid import InternVidDataset
    from vidlit.data.shards import VideoTextShards
    from vidlit.data.video_list import VideoListDataset

    return [
        MomentQueriesDataset([], Path("."), [], 4, 1.0, 0.5, seed=seed),
        StateChangeDataset([], Path("."), seed=seed),
        VideoListDataset([], seed=seed),
        InternVidDataset([], ".", seed=seed),
        VideoTextShards("shard-{0..1}.tar", num_frames=1, seed=seed),
    ]


@pytest.mark.parametrize("seed", [5, 2**32 + 5, -1])
def test_dataset_streams_are_the_seed_sequence_they_always_were(seed):
    """Each dataset drew from ``default_rng([seed % 2**32, int(epoch), *key])`` before the mixin.

    That formula (the five datasets' own code before :class:`EpochSeeded`) is ported here: the
    same key must give the same stream, so sample data, tests and recipe figures do not move.
    """
    for dataset in _datasets(seed):
        assert isinstance(dataset, EpochSeeded)
        for epoch in (0, 3):
            dataset.set_epoch(epoch)
            for key in ((), (7,), (1, 2)):  # the shard order, an item index, (rank, worker)
                expected = np.random.default_rng([seed % 2**32, epoch, *key]).random(4)
                assert np.array_equal(dataset.rng(*key).random(4), expected), (type(dataset), epoch, key)
        assert not np.array_equal(dataset.rng(7).random(4), dataset.rng(8).random(4))


class _Draws(EpochSeeded, Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, index):
        return float(self.rng(index).random())


def test_set_epoch_reaches_persistent_workers():
    dataset = _Draws(seed=11)
    loader = DataLoader(dataset, batch_size=None, num_workers=1, persistent_workers=True)
    first = list(loader)
    dataset.set_epoch(1)  # in the main process, after the worker started
    second = list(loader)
    assert first == [_Draws(seed=11)[i] for i in range(3)] and second != first
    assert second == [dataset[i] for i in range(3)]  # the worker drew epoch 1's, as this process does


def test_global_seed_is_seed_everythings(monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    assert global_seed() == 0 and EpochShuffleSampler(range(3)).seed == 0
    monkeypatch.setenv("PL_GLOBAL_SEED", "42")
    assert global_seed() == 42 and EpochShuffleSampler(range(3)).seed == 42
