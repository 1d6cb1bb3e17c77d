"""WebDataset video-text shards: write, stream (local, brace patterns, fsspec URLs), split, skip."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vidlit.data.sampling import uniform_segments
from vidlit.data.shards import VideoTextShards, decode_mp4, encode_mp4, expand_urls, write_shards

NUM_FRAMES = 12
SIZE = 32


def _clip(seed: int) -> np.ndarray:
    """A clip with a per-clip colour and a bright bar that moves one pixel per frame."""
    rng = np.random.default_rng(seed)
    frames = np.empty((NUM_FRAMES, SIZE, SIZE + 16, 3), dtype=np.uint8)
    frames[:] = rng.integers(40, 200, size=3, dtype=np.uint8)
    for t in range(NUM_FRAMES):
        frames[t, 8:24, 4 + 2 * t : 10 + 2 * t] = 255
    return frames


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [_clip(i) for i in range(6)]


@pytest.fixture(scope="module")
def samples(clips) -> list[dict]:
    return [
        {"key": f"clip{i:03d}", "mp4": encode_mp4(c, fps=10), "caption": f"caption {i}", "json": {"i": i}}
        for i, c in enumerate(clips)
    ]


@pytest.fixture(scope="module")
def shard_dir(samples, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    written = write_shards(samples, str(out / "train-%03d.tar"), maxcount=2)
    assert written == [str(out / f"train-{i:03d}.tar") for i in range(3)]
    return out


def test_round_trip_decodes_the_written_clips(shard_dir, clips):
    dataset = VideoTextShards(str(shard_dir / "train-{000..002}.tar"), num_frames=4)
    items = list(dataset)
    assert [item["video_id"] for item in items] == [f"clip{i:03d}" for i in range(6)]
    for i, item in enumerate(items):
        assert set(item) == {"video", "caption", "video_id"}
        assert item["caption"] == f"caption {i}"
        assert item["video"].dtype == torch.uint8 and item["video"].shape == (4, SIZE, SIZE + 16, 3)
        expected = torch.from_numpy(clips[i][uniform_segments(NUM_FRAMES, 4, train=False)])
        # H.264 at crf 18 is lossy: the right frames come back within a few grey levels
        assert (item["video"].float() - expected.float()).abs().mean() < 4
    assert dataset.num_skipped == 0


def test_short_side_resizes_while_decoding(shard_dir):
    (item, *_) = VideoTextShards(str(shard_dir / "train-000.tar"), num_frames=3, short_side=16)
    assert item["video"].shape == (3, 16, 24, 3)


def test_url_forms_brace_list_file_and_memory(shard_dir, samples):
    expected = [f"clip{i:03d}" for i in range(6)]
    urls = [f"file://{shard_dir}/train-{{000..001}}.tar", str(shard_dir / "train-002.tar")]
    assert expand_urls(urls)[:2] == [f"file://{shard_dir}/train-000.tar", f"file://{shard_dir}/train-001.tar"]
    assert [x["video_id"] for x in VideoTextShards(urls, num_frames=2)] == expected
    # any fsspec protocol: write and read an in-memory "bucket" (as s3:// or gs:// would be)
    remote = write_shards(samples, "memory://vidlit-test/clips-%04d.tar", maxcount=4)
    assert remote == ["memory://vidlit-test/clips-0000.tar", "memory://vidlit-test/clips-0001.tar"]
    assert fsspec.filesystem("memory").exists("/vidlit-test/clips-0001.tar")
    streamed = VideoTextShards("memory://vidlit-test/clips-{0000..0001}.tar", num_frames=2)
    assert [x["video_id"] for x in streamed] == expected


def test_one_output_folder_serves_every_shard(samples, tmp_path, monkeypatch):
    """``write_shards`` opens its output folder (an fsspec file system) once, not once per shard;
    a number in a folder name still writes each shard into its own folder."""
    from vidlit.core.storage import OutputFolder

    opened: list[str] = []
    real_init = OutputFolder.__init__

    def counting_init(self, url):  # observes the real constructor, which still builds the folder
        opened.append(str(url))
        real_init(self, url)

    monkeypatch.setattr(OutputFolder, "__init__", counting_init)
    url = f"memory://vidlit-test-{tmp_path.name}/clips-%02d.tar"
    try:
        assert write_shards(samples, url, maxcount=2) == [url % i for i in range(3)]
        assert opened == [f"memory://vidlit-test-{tmp_path.name}"]
        assert [x["video_id"] for x in VideoTextShards([url % i for i in range(3)], num_frames=1)] == [
            s["key"] for s in samples
        ]
    finally:
        fsspec.filesystem("memory").rm(f"/vidlit-test-{tmp_path.name}", recursive=True)
    opened.clear()
    nested = write_shards(samples, str(tmp_path / "part-%d" / "clips.tar"), maxcount=3, start_index=1)
    assert nested == [str(tmp_path / "part-1" / "clips.tar"), str(tmp_path / "part-2" / "clips.tar")]
    assert opened == [str(tmp_path)]
    assert [x["video_id"] for x in VideoTextShards(nested, num_frames=1)] == [s["key"] for s in samples]
    # "%%" is a literal "%" in the folder part as in the names: written where the returned paths say
    literal = write_shards(samples, str(tmp_path / "100%%" / "s-%02d.tar"), maxcount=10)
    assert literal == [str(tmp_path / "100%" / "s-00.tar")] and Path(literal[0]).is_file()


def test_shards_are_dealt_to_ranks_and_workers_once(shard_dir):
    dataset = VideoTextShards(str(shard_dir / "train-{000..002}.tar"), num_frames=2)
    dealt = [dataset.shards_for(rank, 2, worker, 2) for rank in range(2) for worker in range(2)]
    assert sorted(url for urls in dealt for url in urls) == dataset.urls
    assert [len(urls) for urls in dealt] == [1, 1, 1, 0]
    loader = DataLoader(dataset, batch_size=None, num_workers=2)
    ids = [item["video_id"] for item in loader]
    assert sorted(ids) == [f"clip{i:03d}" for i in range(6)]  # each sample exactly once


def test_shuffle_is_a_function_of_seed_and_epoch(shard_dir):
    dataset = VideoTextShards(str(shard_dir / "train-{000..002}.tar"), num_frames=1, shuffle=4, seed=3)
    first = [x["video_id"] for x in dataset]
    assert [x["video_id"] for x in dataset] == first
    assert sorted(first) == [f"clip{i:03d}" for i in range(6)]
    orders = set()
    for epoch in range(1, 6):
        dataset.set_epoch(epoch)
        orders.add(tuple(x["video_id"] for x in dataset))
    assert len(orders | {tuple(first)}) > 1


def _tar(path: Path, files: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_corrupt_samples_and_truncated_shards_are_skipped_and_counted(samples, tmp_path, caplog):
    good = samples[0]["mp4"]
    _tar(
        tmp_path / "mixed.tar",
        [
            ("a.mp4", good),
            ("a.txt", b"first"),
            ("b.mp4", b"\x00not a video" * 50),  # undecodable
            ("b.txt", b"broken clip"),
            ("c.mp4", good),  # no caption
            ("d.mp4", good),
            ("d.json", b'{"caption": "caption from json"}'),
        ],
    )
    whole = tmp_path / "whole.tar"
    _tar(
        whole,
        [(f"k{i}.{ext}", good if ext == "mp4" else b"text") for i in range(3) for ext in ("mp4", "txt")],
    )
    with tarfile.open(whole) as tar:
        cut = tar.getmember("k2.mp4").offset_data + len(good) // 2  # half-way through k2's video
    (tmp_path / "truncated.tar").write_bytes(whole.read_bytes()[:cut])
    dataset = VideoTextShards([str(tmp_path / "mixed.tar"), str(tmp_path / "truncated.tar")], num_frames=2)
    items = list(dataset)
    assert [(x["video_id"], x["caption"]) for x in items] == [
        ("a", "first"),
        ("d", "caption from json"),
        ("k0", "text"),
        ("k1", "text"),
    ]
    assert dataset.num_skipped == 3  # b (decode), c (caption), the truncated shard's tail
    assert "mixed.tar: skipping sample b" in caplog.text and "truncated.tar" in caplog.text


def test_a_member_named_error_is_just_a_field(samples, tmp_path):
    # a sample may carry a "<key>.error" member; it must not read as a broken shard (which
    # would drop the rest of the shard)
    good = samples[0]["mp4"]
    _tar(
        tmp_path / "fields.tar",
        [
            ("a.mp4", good),
            ("a.txt", b"first"),
            ("a.error", b"an annotator's note"),
            ("b.mp4", good),
            ("b.txt", b"second"),
        ],
    )
    shards = VideoTextShards(str(tmp_path / "fields.tar"), num_frames=4, shuffle=0)
    assert [s["caption"] for s in shards] == ["first", "second"]
    assert shards.num_skipped == 0


def test_strict_raises_and_markers_name_the_shard_and_key(samples, tmp_path):
    from vidlit.data.video import VideoDecodeError

    _tar(tmp_path / "s.tar", [("a.mp4", samples[0]["mp4"]), ("a.txt", b"ok"), ("b.mp4", b"\x00" * 300)])
    url = str(tmp_path / "s.tar")
    with pytest.raises(VideoDecodeError, match=r"s\.tar: sample b: no caption .*strict=True") as info:
        list(VideoTextShards(url, num_frames=2, strict=True))
    assert info.value.path == url
    items = list(VideoTextShards(url, num_frames=2, failure_markers=True))
    assert items[0]["video_id"] == "a"
    assert items[1] == {
        "error": url,
        "reason": "sample b: no caption (.txt, or 'caption' in .json)",
        "video_id": "b",
    }


def test_missing_shard_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope-000.tar: shard not found"):
        list(VideoTextShards(str(tmp_path / "nope-000.tar"), num_frames=2))


def test_write_shards_rejects_bad_input(samples, tmp_path):
    with pytest.raises(ValueError, match="exactly one integer field"):
        write_shards(samples, str(tmp_path / "shard.tar"))
    with pytest.raises(ValueError, match=r"sample 0: key 'a\.b'.*'\.'"):
        write_shards([{**samples[0], "key": "a.b"}], str(tmp_path / "s-%d.tar"))
    with pytest.raises(ValueError, match="sample 1: key 'clip000' is used twice"):
        write_shards([samples[0], samples[0]], str(tmp_path / "s-%d.tar"))
    with pytest.raises(ValueError, match="'caption' must be a string"):
        write_shards([{**samples[0], "caption": None}], str(tmp_path / "s-%d.tar"))


def test_decode_mp4_rejects_garbage():
    with pytest.raises(ValueError, match="cannot open the video"):
        decode_mp4(b"garbage" * 100, num_frames=2)


def test_shards_read_with_webdataset_itself(shard_dir):
    import webdataset as wds

    (first, *_) = wds.WebDataset(str(shard_dir / "train-000.tar"), shardshuffle=False, empty_check=False)
    assert first["__key__"] == "clip000" and first["txt"] == b"caption 0"
    assert {"mp4", "txt", "json"} <= set(first)
