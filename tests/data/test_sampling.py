"""Frame samplers: worked examples, determinism, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from vidlit.data.sampling import (
    clip_span,
    dense_clip,
    frame_window,
    multi_view_clips,
    sample_in_window,
    uniform_segments,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_uniform_segments_test_mode_takes_segment_centres():
    np.testing.assert_array_equal(uniform_segments(100, 4, train=False), [12, 37, 62, 87])
    np.testing.assert_array_equal(uniform_segments(10, 3, train=False), [1, 5, 8])
    assert uniform_segments(100, 4, train=False).dtype == np.int64


def test_uniform_segments_train_mode_stays_in_its_segment_and_is_seeded():
    for seed in range(20):
        indices = uniform_segments(100, 4, train=True, rng=rng(seed))
        assert ((indices >= [0, 25, 50, 75]) & (indices < [25, 50, 75, 100])).all()
    np.testing.assert_array_equal(
        uniform_segments(1000, 8, train=True, rng=rng(1)), uniform_segments(1000, 8, train=True, rng=rng(1))
    )
    draws = {tuple(uniform_segments(1000, 8, train=True, rng=rng(s))) for s in range(5)}
    assert len(draws) == 5


def test_uniform_segments_train_mode_draws_whole_frame_segments_as_videomae():
    # VideoMAE's ssv2.py: segment n // k = 3 frames, i * 3 + randint(3); frames 12-13 never drawn
    seen = np.stack([uniform_segments(14, 4, train=True, rng=rng(s), whole_frames=True) for s in range(200)])
    for i in range(4):
        assert set(seen[:, i]) == {3 * i, 3 * i + 1, 3 * i + 2}
    # the default splits at i * n / k (ViCLIP's rand sampling): frame 13 is drawn
    assert 13 in {int(uniform_segments(14, 4, train=True, rng=rng(s))[-1]) for s in range(200)}
    # the same draw as numpy's integers on the same generator (what VideoMAE's randint draws)
    np.testing.assert_array_equal(
        uniform_segments(14, 4, train=True, rng=rng(7), whole_frames=True), np.arange(4) * 3 + rng(7).integers(3, size=4)
    )


def test_uniform_segments_more_segments_than_frames():
    for train in (False, True):
        indices = uniform_segments(3, 8, train=train, rng=rng())
        assert indices.shape == (8,) and indices.min() >= 0 and indices.max() <= 2
        assert (np.diff(indices) >= 0).all()
    assert set(uniform_segments(3, 8, train=False)) == {0, 1, 2}
    np.testing.assert_array_equal(uniform_segments(1, 4, train=True, rng=rng()), [0, 0, 0, 0])


def test_dense_clip_centre_and_random_start():
    # span 29 of 100 frames: starts 0..71, the centre one is floor(72 / 2) = 36
    np.testing.assert_array_equal(dense_clip(100, 8, 4, train=False), 36 + 4 * np.arange(8))
    starts = {int(dense_clip(100, 8, 4, train=True, rng=rng(s))[0]) for s in range(200)}
    assert min(starts) >= 0 and max(starts) <= 71 and len(starts) > 30
    np.testing.assert_array_equal(
        dense_clip(100, 8, 4, train=True, rng=rng(7)), dense_clip(100, 8, 4, train=True, rng=rng(7))
    )
    np.testing.assert_array_equal(dense_clip(29, 8, 4, train=True, rng=rng()), 4 * np.arange(8))


def test_dense_clip_pads_short_videos_with_the_last_frame():
    for train in (False, True):
        np.testing.assert_array_equal(dense_clip(10, 8, 2, train=train, rng=rng()), [0, 2, 4, 6, 8, 9, 9, 9])
    np.testing.assert_array_equal(dense_clip(1, 4, 1, train=False), [0, 0, 0, 0])


def test_multi_view_clips_are_evenly_spaced():
    clips = multi_view_clips(100, 8, 4, num_clips=3)
    assert clips.shape == (3, 8) and clips.dtype == np.int64
    # 72 possible starts in 3 parts of 24: centres at 12, 36, 60
    np.testing.assert_array_equal(clips[:, 0], [12, 36, 60])
    np.testing.assert_array_equal(clips - clips[:, :1], np.tile(4 * np.arange(8), (3, 1)))
    for n, k in [(30, 10), (300, 7), (33, 5)]:
        starts = multi_view_clips(n, 4, 2, num_clips=k)[:, 0]
        assert (np.diff(starts) >= 0).all() and np.ptp(np.diff(starts)) <= 1
    np.testing.assert_array_equal(multi_view_clips(5, 4, 2, num_clips=2), [[0, 2, 4, 4]] * 2)


def test_one_view_is_the_centre_clip():
    for n in (5, 29, 30, 31, 100, 101):
        np.testing.assert_array_equal(
            multi_view_clips(n, 8, 4, num_clips=1)[0], dense_clip(n, 8, 4, train=False)
        )


@pytest.mark.parametrize(
    "call",
    [
        lambda: uniform_segments(0, 4, train=False),
        lambda: uniform_segments(10, 0, train=False),
        lambda: dense_clip(0, 8, 2, train=True, rng=rng()),
        lambda: dense_clip(10, 0, 2, train=False),
        lambda: dense_clip(10, 8, 0, train=False),
        lambda: multi_view_clips(0, 8, 2, 3),
        lambda: multi_view_clips(10, 8, 2, 0),
        lambda: clip_span(0, 1),
    ],
)
def test_invalid_arguments_raise(call):
    with pytest.raises(ValueError):
        call()


def test_every_sampler_stays_in_range():
    generator = rng(123)
    for _ in range(300):
        n = int(generator.integers(1, 200))
        k, clip_len, stride = (int(v) for v in generator.integers(1, 20, size=3))
        for indices in (
            uniform_segments(n, k, train=True, rng=generator),
            uniform_segments(n, k, train=True, rng=generator, whole_frames=True),
            uniform_segments(n, k, train=False),
            dense_clip(n, clip_len, stride, train=True, rng=generator),
            dense_clip(n, clip_len, stride, train=False),
            multi_view_clips(n, clip_len, stride, k),
        ):
            assert indices.min() >= 0 and indices.max() < n


def test_rng_none_draws_fresh_entropy():
    draws = {tuple(uniform_segments(10_000, 8, train=True)) for _ in range(3)}
    assert len(draws) == 3


def test_frame_window():
    # frame i shows [i / fps, (i + 1) / fps): at 10 fps, [1.25 s, 2.0 s) covers frames 12..19
    assert frame_window(100, 10.0, 1.25, 2.0) == (12, 20)
    assert frame_window(100, 10.0, 0.3, 0.7) == (3, 7)  # 0.3 * 10 is 2.9999... in floating point
    assert frame_window(100, 10.0, 5.0) == (50, 100)
    assert frame_window(100, 10.0, 9.5, 12.0) == (95, 100)  # end past the video is cut
    assert frame_window(100, 10.0, 1.01, 1.02) == (10, 11)  # never empty
    for start, end in [(-1.0, 2.0), (3.0, 3.0), (3.0, 2.0), (10.0, 11.0)]:
        with pytest.raises(ValueError, match="window"):
            frame_window(100, 10.0, start, end)
    with pytest.raises(ValueError, match="fps"):
        frame_window(100, 0.0, 0.0, 1.0)


def test_sample_in_window():
    # an InternVid-style caption span of 12.5-17.0 s in a 30 fps, 60 s video: frames 375..509
    indices = sample_in_window(uniform_segments, 1800, 30.0, 12.5, 17.0, k=8, train=False)
    np.testing.assert_array_equal(indices, 375 + uniform_segments(135, 8, train=False))
    for seed in range(20):
        for indices in (
            sample_in_window(uniform_segments, 1800, 30.0, 12.5, 17.0, k=8, train=True, rng=rng(seed)),
            sample_in_window(
                dense_clip, 1800, 30.0, 12.5, 17.0, clip_len=16, stride=4, train=True, rng=rng(seed)
            ),
            sample_in_window(multi_view_clips, 1800, 30.0, 12.5, 17.0, clip_len=16, stride=4, num_clips=3),
        ):
            assert indices.min() >= 375 and indices.max() <= 509
    # a window shorter than the clip repeats the window's last frame, not frames after it
    np.testing.assert_array_equal(
        sample_in_window(dense_clip, 100, 10.0, 2.0, 2.3, clip_len=4, stride=1, train=False), [20, 21, 22, 22]
    )
