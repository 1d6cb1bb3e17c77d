"""Retrieval readers on the synthetic benchmarks: paragraphs, file lookup, batches; errors in setup()."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest

from vidlit.data.retrieval import RetrievalDataModule, RetrievalDataset, read_retrieval_annotations
from vidlit.data.synth.retrieval import write_activitynet, write_didemo, write_msrvtt
from vidlit.formats.retrieval import DIDEMO_MAX_SECONDS, paragraph

FORMATS = {
    "msrvtt": (write_msrvtt, "MSRVTT_JSFUSION_test.csv", "videos/all"),
    "didemo": (write_didemo, "test_data.json", "videos"),
    "activitynet": (write_activitynet, "val_1.json", "videos"),
}


@pytest.fixture(scope="module", params=sorted(FORMATS))
def sample(request, tmp_path_factory):
    write, annotations, video_dir = FORMATS[request.param]
    root = write(tmp_path_factory.mktemp(request.param) / "data", num_videos=3)
    return request.param, root, annotations, video_dir


def _module(sample, **kwargs) -> RetrievalDataModule:
    format, root, annotations, video_dir = sample
    args = dict(
        root=str(root), format=format, annotations=annotations, video_dir=video_dir, size=32, batch_size=2
    )
    return RetrievalDataModule(**{**args, **kwargs})


def test_paragraphs_join_each_videos_sentences_in_file_order(sample):
    format, root, annotations, _ = sample
    videos = read_retrieval_annotations(root / annotations, format)
    assert len(videos) == 3 and len({v.video_id for v in videos}) == 3
    if format == "msrvtt":
        rows = list(csv.DictReader((root / annotations).open()))
        assert [(v.video_id, v.caption) for v in videos] == [(r["video_id"], r["sentence"]) for r in rows]
    elif format == "activitynet":
        document = json.loads((root / annotations).read_text())
        assert [v.caption for v in videos] == [paragraph(e["sentences"]) for e in document.values()]
        assert all(v.end is None for v in videos)  # the whole video
        assert all(len(e["sentences"]) == 2 for e in document.values())
    else:
        moments = json.loads((root / annotations).read_text())
        for video in videos:
            descriptions = [m["description"] for m in moments if m["video"] == video.video_id]
            assert len(descriptions) == 2 and video.caption == " ".join(descriptions)
            assert video.end == DIDEMO_MAX_SECONDS  # the annotated first 30 s


def test_the_module_batches_every_caption_with_its_video(sample):
    format, root, *_ = sample
    dm = _module(sample)
    dm.setup("test")
    batches = [dm.on_after_batch_transfer(b, 0) for b in dm.test_dataloader()]
    assert [len(b["captions"]) for b in batches] == [2, 1]
    assert batches[0]["video"].shape == (2, 3, 8, 32, 32)
    assert not any(b["skipped"] for b in batches)  # DiDeMo's ".mov" names found their ".mp4" files
    ids = [i for b in batches for i in b["video_ids"]]
    assert ids == [v.video_id for v in dm.videos()]


def test_a_decode_error_names_the_video_where_the_file_has_it(sample):
    """Not 'annotation line <n>' (a JSON record's 0-based position for ActivityNet / DiDeMo)."""
    format, root, annotations, video_dir = sample
    videos = read_retrieval_annotations(root / annotations, format)
    expected = {
        "msrvtt": "MSRVTT_JSFUSION_test.csv: line 2",  # the first row after the header
        "activitynet": f"val_1.json: video {videos[0].video_id!r}",
        "didemo": "test_data.json: [0]",
    }[format]
    assert videos[0].where == expected
    past_end = [dataclasses.replace(videos[0], start=100.0, end=101.0)]
    marker = RetrievalDataset(past_end, root / video_dir, num_frames=2)[0]
    assert marker["reason"].startswith(f"{expected}: ") and "after the video ends" in marker["reason"]


def test_a_malformed_file_fails_in_setup_with_one_line(sample, tmp_path):
    format, root, annotations, video_dir = sample
    bad = tmp_path / annotations
    if format == "msrvtt":
        bad.write_text("key,vid_key,video_id,sentence\nret0,msr1,video1,\n")
        match = r"line 2: key 'sentence'"
    elif format == "activitynet":
        bad.write_text(json.dumps({"v_a": {"duration": 0, "timestamps": [], "sentences": ["x"]}}))
        match = r"video 'v_a': key 'duration'"
    else:
        bad.write_text(json.dumps([{"video": "a.mov", "description": "x", "times": [[9, 9]]}]))
        match = r"\[0\]: key 'times'"
    dm = RetrievalDataModule(str(tmp_path), format=format, annotations=annotations, video_dir=video_dir)
    with pytest.raises(ValueError, match=match) as err:
        dm.setup("test")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="evaluates only"):
        dm.setup("fit")
    if format == "activitynet":  # an id that names a file outside the video folder
        bad.write_text(
            json.dumps({"v_../../etc/x": {"duration": 5, "timestamps": [[0, 5]], "sentences": ["x"]}})
        )
        dm = RetrievalDataModule(str(tmp_path), format=format, annotations=annotations, video_dir=video_dir)
        with pytest.raises(ValueError, match=r"val_1.json: video 'v_../../etc/x'"):
            dm.setup("test")
    with pytest.raises(ValueError, match="format must be one of"):
        RetrievalDataModule(str(tmp_path), format="msvd")
