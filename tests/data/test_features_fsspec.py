"""Feature datasets read from fsspec URLs (``memory://``, ``file://``) give what a local copy gives."""

import csv
import json
import math
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch
from fsspec.implementations.memory import MemoryFileSystem

from vidlit.core.io import ListedFiles, confined_path, confined_url, join_path, read_json, url_listing
from vidlit.core.storage import OutputFolder
from vidlit.data.ego4d_mq import Ego4DMQ
from vidlit.data.ego4d_nlq import Ego4DNLQ
from vidlit.data.features import (
    EXTRACTION_RECORD,
    feature_steps,
    feature_timing,
    find_feature_file,
    find_feature_files,
    load_feature_file,
)
from vidlit.data.synth.ego4d_mq import write_ego4d_mq
from vidlit.data.synth.ego4d_nlq import write_ego4d_nlq
from vidlit.data.synth.videos import write_synthetic_videos

DIM = 32


def _upload(local, url):
    """Every file under ``local`` to the same names under ``url``, written as ``vidlit extract`` writes."""
    out = OutputFolder(url)
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        out.write(path.relative_to(local).as_posix(), path.read_bytes())


@pytest.fixture(scope="module")
def mq_local(tmp_path_factory):
    root = tmp_path_factory.mktemp("mq_fsspec")
    write_ego4d_mq(
        root, num_train=8, num_val=4, num_test=2, num_classes=2, feature_dim=DIM, min_steps=24, max_steps=48
    )
    features = root / "features"
    # one clip stored as .npy, and the extraction record the clock is read from
    first = sorted(features.glob("*.pt"))[0]
    np.save(first.with_suffix(".npy"), torch.load(first, weights_only=True).numpy())
    first.unlink()
    (features / EXTRACTION_RECORD).write_text(json.dumps({"fps": 15.0, "feature_stride": 16}))
    return root


@pytest.fixture
def mq_memory(mq_local, memory_url):
    _upload(mq_local, memory_url)
    return memory_url


def _batches(dm, split):
    loader = dm.train_dataloader() if split == "train" else dm.val_dataloader()
    return list(loader)


def _assert_same_batches(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x["video_ids"] == y["video_ids"]
        for key in ("features", "mask", "duration", "step_sec", "offset_sec"):
            assert torch.equal(x[key], y[key]), key
        for tx, ty in zip(x["targets"], y["targets"]):
            assert torch.equal(tx["segments"], ty["segments"]) and torch.equal(tx["labels"], ty["labels"])


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_mq_batches_from_url_root_equal_local(mq_local, mq_memory, scheme):
    root = mq_memory if scheme == "memory" else f"file://{mq_local}"
    local = Ego4DMQ(root=str(mq_local), feature_dim=DIM, batch_size=2)
    remote = Ego4DMQ(root=root, feature_dim=DIM, batch_size=2)
    # the clock comes from the URL folder's extraction.json
    assert remote.step_sec == local.step_sec == pytest.approx(16 / 15)
    assert remote.class_names == local.class_names
    local.setup("fit")
    remote.setup("fit")
    assert any(str(p).endswith(".npy") for p in remote.datasets["train"].paths + remote.datasets["val"].paths)
    for split in ("train", "val"):
        _assert_same_batches(_batches(local, split), _batches(remote, split))


def _extract_mq(tmp_path, url):
    """Features of 4 synthetic videos extracted (``vidlit extract``'s function) to a local folder and to
    ``url``, with MQ annotation files naming them; returns the local dataset folder."""
    from vidlit.backbones import create_backbone
    from vidlit.extract import FeatureExtractor, extract_features

    write_synthetic_videos(tmp_path / "clips", 4, num_frames=40, size=32, fps=15, seed=2)
    torch.manual_seed(0)
    backbone = create_backbone("vit_test", num_frames=4).eval()
    extractor = FeatureExtractor(backbone, frames_per_window=4, size=32)
    settings = {"window": 16, "stride": 16, "batch_size": 2, "progress": False}
    for out in (tmp_path / "mq" / "features", f"{url}/features"):
        extract_features(extractor, tmp_path / "clips" / "videos.csv", out, **settings)
    # one video per extracted clip; its features span 40 frames at 15 fps
    labels = [{"start_time": 0.5, "end_time": 2.0, "label": name, "primary": True} for name in ("a", "b")]
    for split, keys in (("train", ["000000", "000001", "000002"]), ("val", ["000003", "000000"])):
        clips = [
            {"clip_uid": key, "video_start_sec": 0.0, "video_end_sec": 40 / 15,
             "annotations": [{"annotator_uid": "x", "labels": labels}]}
            for key in keys
        ]  # fmt: skip
        document = {"videos": [{"video_uid": f"v{split}", "split": split, "clips": clips}]}
        (tmp_path / "mq" / f"moments_{split}.json").write_text(json.dumps(document))
        OutputFolder(url).write_json(f"moments_{split}.json", document)
    return tmp_path / "mq"


def test_mq_batches_from_features_extract_wrote_to_memory(tmp_path, memory_url):
    """``vidlit extract --out memory://...`` output, read back by Ego4D MQ as from a local folder."""
    root = _extract_mq(tmp_path, memory_url)
    local = Ego4DMQ(root=str(root), feature_dim=64, batch_size=2)
    remote = Ego4DMQ(root=memory_url, feature_dim=64, batch_size=2)
    assert remote.clock == local.clock and remote.step_sec == pytest.approx(16 / 15)  # extraction.json
    local.setup("fit")
    remote.setup("fit")
    for split in ("train", "val"):
        _assert_same_batches(_batches(local, split), _batches(remote, split))


@pytest.mark.slow
def test_vidlit_fit_reads_a_memory_root(tmp_path, memory_url, one_thread):
    """``vidlit fit`` (one train and one val batch, 1 epoch) on the MQ recipe with ``root: memory://...``."""
    from vidlit.cli import main

    _extract_mq(tmp_path, memory_url)
    small = tmp_path / "small.yaml"
    small.write_text(
        "model:\n  init_args:\n    head:\n      init_args: {embed_dim: 32, head_dim: 32, levels: 3}\n"
    )
    recipe = str(Path(__file__).resolve().parents[2] / "recipes" / "ego4d_mq.yaml")
    main(
        ["fit", "--config", recipe, "--config", str(small), "--data.init_args.root", memory_url]
        + ["--data.init_args.synthetic", "false", "--data.init_args.feature_dim", "64"]
        + ["--data.init_args.batch_size", "2", "--trainer.max_epochs", "1"]
        + ["--trainer.log_every_n_steps", "1"]
        + ["--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"]
        + ["--trainer.default_root_dir", str(tmp_path / "runs")]
    )
    (run,) = (tmp_path / "runs").glob("version_*")
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r for r in rows if r.get("val/mAP")] and all(
        math.isfinite(float(r["train/loss"])) for r in rows if r.get("train/loss")
    )


def test_feature_helpers_read_urls(mq_local, mq_memory, memory_requests):
    features = join_path(mq_memory, "features")
    keys = sorted(p.stem for p in (mq_local / "features").iterdir() if p.suffix in (".pt", ".npy"))
    memory_requests["ls"].clear(), memory_requests["stat"].clear()
    found = find_feature_files(features, keys + ["absent"])
    # one listing of the folder, no question per file (each would be a request on an object store)
    assert memory_requests == {"ls": [fsspec.core.url_to_fs(features)[1]], "stat": []}
    assert found[-1] is None and all(isinstance(p, str) and p.startswith("memory://") for p in found[:-1])
    for key, url in zip(keys, found):
        local = next((mq_local / "features").glob(f"{key}.*"))
        expected = load_feature_file(local, DIM)
        assert torch.equal(load_feature_file(url, DIM), expected)
        assert feature_steps(url) == expected.shape[0]  # .npy: from the header alone
    assert feature_timing(features) == (15.0, 16, 32)
    assert read_json(join_path(features, EXTRACTION_RECORD)) == {"fps": 15.0, "feature_stride": 16}


@pytest.mark.parametrize("family", ["mq", "nlq"])
def test_the_feature_folder_is_listed_once_for_all_splits(
    family, mq_memory, memory_url, tmp_path, memory_requests
):
    """fit's train and val datasets and test's share one listing of the URL feature folder."""
    if family == "mq":
        dm = Ego4DMQ(root=mq_memory, feature_dim=DIM, batch_size=2)
    else:
        local = write_ego4d_nlq(tmp_path / "nlq", num_train_videos=2, num_val_videos=2, num_test_videos=1,
                                feature_dim=DIM)  # fmt: skip
        root = f"{memory_url}-nlq"
        _upload(local, root)
        dm = Ego4DNLQ(root=root, feature_dim=DIM, batch_size=2)
    features = fsspec.core.url_to_fs(dm.feature_dir)[1]
    memory_requests["ls"].clear()
    dm.setup("fit")
    assert len(dm.train_dataloader().dataset) > 0 and len(dm.val_dataloader().dataset) > 0
    dm.setup("test")
    assert len(dm.test_dataloader().dataset) > 0
    assert memory_requests["ls"].count(features) == 1, memory_requests["ls"]


def test_url_errors_name_the_url_and_clip(mq_memory):
    dm = Ego4DMQ(root=mq_memory, feature_dim=DIM, batch_size=2)
    clip = dm.clips("val")[0]
    url = f"{mq_memory}/features/{clip.clip_uid}.pt"
    fsspec.filesystem("memory").pipe_file(fsspec.core.url_to_fs(url)[1], b"not a tensor")
    dm.setup("validate")
    with pytest.raises(ValueError, match=rf"^{url} \(clip {clip.clip_uid}\): cannot read feature file"):
        _batches(dm, "val")
    with pytest.raises(FileNotFoundError, match=rf"^{mq_memory}/nothing.json: annotation file not found"):
        Ego4DMQ(root=mq_memory, feature_dim=DIM, val_annotations="nothing.json").clips("val")


def test_traversal_through_an_id_is_refused_for_url_roots(mq_memory):
    out = OutputFolder(mq_memory)
    document = json.loads(out.read_bytes("moments_train.json"))
    document["videos"][0]["clips"][0]["clip_uid"] = "../../elsewhere/secret"
    out.write_json("moments_train.json", document)
    dm = Ego4DMQ(root=mq_memory, feature_dim=DIM, batch_size=2)
    with pytest.raises(
        ValueError,
        match=r"moments_train.json: videos\[0\]\.clips\[0\]: key 'clip_uid': "
        r"'../../elsewhere/secret' points outside",
    ):
        dm.setup("fit")


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "s3://other/x", "a\\..\\x", ""])
def test_confined_url_rejects_ways_out(name):
    with pytest.raises(ValueError, match="points outside memory://root"):
        confined_url("memory://root", name, "record")
    with pytest.raises(ValueError, match="points outside"):
        confined_path("memory://root", name, "record")


def test_confined_url_keeps_names_inside():
    assert confined_path("s3://bucket/data/", "features/c1.pt", "r") == "s3://bucket/data/features/c1.pt"
    assert confined_url("memory://root", "a/b..c.pt", "r") == "memory://root/a/b..c.pt"


@pytest.mark.parametrize("name", ["memory://elsewhere/x", "s3://other-bucket/x.pt", "file:///etc/passwd"])
def test_an_id_with_a_protocol_is_refused_under_a_local_root(tmp_path, name):
    """An annotation id such as ``s3://other/x`` must not read another store through a local root:
    joined to a folder, a URL would stand alone (review finding)."""
    with pytest.raises(ValueError, match="points outside"):
        confined_path(tmp_path, name, "moments_train.json: videos[0].clips[0]")
    with pytest.raises(ValueError, match="points outside"):
        find_feature_file(tmp_path, name)


def test_listed_files_lists_each_url_folder_once(memory_url, memory_requests):
    out = OutputFolder(memory_url)
    for name in ("a.npy", "b.pt", "sub/c.npy"):
        out.write(name, b"x")
    memory_requests["ls"].clear(), memory_requests["stat"].clear()
    files = ListedFiles()
    names = ["a.npy", "b.pt", "absent.npy", "sub", "sub/c.npy", "sub/d.npy", "nothing/e.npy", "a.npy"]
    assert [files.exists(f"{memory_url}/{name}") for name in names] == [
        True, True, False, False, True, False, False, True
    ]  # fmt: skip
    root = fsspec.core.url_to_fs(memory_url)[1]
    # a folder that lists empty is asked file by file (an HTTP root without an index lists empty)
    assert memory_requests == {
        "ls": [root, f"{root}/sub", f"{root}/nothing"],
        "stat": [f"{root}/nothing/e.npy"],
    }
    assert url_listing(memory_url) == {"a.npy", "b.pt"} and url_listing(f"{memory_url}/a.npy") == set()
    fsspec.filesystem("memory").pipe_file("/vidlit-top-level.npy", b"x")
    try:  # a file at the store's root has no folder to list: it is asked for
        assert files.exists("memory://vidlit-top-level.npy") and not files.exists(
            "memory://vidlit-absent.npy"
        )
    finally:
        fsspec.filesystem("memory").rm_file("/vidlit-top-level.npy")


def test_listed_files_answers_as_file_exists_for_local_paths_and_file_urls(tmp_path):
    (tmp_path / "a.npy").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.npy").symlink_to(tmp_path / "a.npy")
    files = ListedFiles()
    for name, expected in (("a.npy", True), ("link.npy", True), ("sub", False), ("absent.npy", False)):
        assert files.exists(tmp_path / name) is expected, name
        assert files.exists(f"file://{tmp_path}/{name}") is expected, name


def test_output_folder_lists_in_one_request(memory_url, memory_requests):
    # an object store answers ls alone; the isdir that preceded it was a second request per listing
    out = OutputFolder(memory_url)
    for name in ("a.pt", "b.pt", "sub/c.pt"):
        out.write(name, b"x")
    memory_requests["ls"].clear(), memory_requests["stat"].clear()
    assert out.list() == ["a.pt", "b.pt"] and out.list("sub") == ["sub/c.pt"] and out.list("none") == []
    root = fsspec.core.url_to_fs(memory_url)[1]
    assert memory_requests == {"ls": [root, f"{root}/sub", f"{root}/none"], "stat": []}
    assert OutputFolder(f"{memory_url}/a.pt").list() == []  # a file is no folder


class _UnlistableMemory(MemoryFileSystem):
    """The in-memory store with an object store's read-only policy: objects are read, listings refused."""

    protocol = "unlistable"

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol("memory://" + path.removeprefix("unlistable://"))

    def ls(self, path, detail=True, **kwargs):
        raise PermissionError(f"{path}: Access Denied (no s3:ListBucket)")


def test_listed_files_asks_file_by_file_where_listing_is_refused_or_at_the_root(tmp_path, monkeypatch):
    fsspec.register_implementation("unlistable", _UnlistableMemory, clobber=True)
    fs = fsspec.filesystem("unlistable")
    fs.pipe_file("/vidlit-unlistable/feats/a.npy", b"x")
    try:
        files = ListedFiles()
        assert files.exists("unlistable://vidlit-unlistable/feats/a.npy")
        assert not files.exists("unlistable://vidlit-unlistable/feats/b.npy")
    finally:
        fs.rm("/vidlit-unlistable", recursive=True)
    # file:///name: the folder is the file system's root, not the working directory
    (tmp_path / "here.npy").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert not ListedFiles().exists("file:///here.npy")
