from vidlit.data.base import EpochShuffleSampler


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
