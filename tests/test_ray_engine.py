"""The engines of ``vidlit curate`` / ``vidlit extract``: Ray Data and local write the same files,
resume by partition, refuse a folder made otherwise, and write to any fsspec URL."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch

from vidlit.backbones import create_backbone
from vidlit.backbones.video_text import VideoTextModel
from vidlit.curate import curate
from vidlit.data.shards import VideoTextShards
from vidlit.data.synth.videos import write_synthetic_videos, write_video
from vidlit.engines import OutputFolder, RayOptions, split_partitions
from vidlit.extract import FeatureExtractor, extract_features

# Ray starts its own worker processes: no other test runs beside these (tests/conftest.py)
pytestmark = pytest.mark.exclusive

ROOT = Path(__file__).resolve().parents[1]
CURATE = {"threshold": -1.0, "min_shot_frames": 6, "min_clip_seconds": 0.5, "progress": False}
EXTRACT = {"window": 16, "stride": 16, "batch_size": 2, "progress": False}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """Four 2-shot videos (hard cut at frame 15) and a corrupt one, listed last."""
    root = tmp_path_factory.mktemp("ray_sources")
    rng = np.random.default_rng(0)
    lines = []
    for v in range(4):
        frames = np.empty((30, 32, 32, 3), dtype=np.uint8)
        for t in range(30):
            colour = np.asarray([(40 * v) % 255, 200 if t < 15 else 30, 90])
            frames[t] = np.clip(colour + rng.integers(-5, 6, size=(32, 32, 3)), 0, 255)
            frames[t, 10:20, t % 20 : t % 20 + 8] = 255
        write_video(root / f"v{v}.mp4", frames, fps=15)
        lines.append(
            {"video": f"v{v}.mp4", "captions": ["a moving bar", {"start": 1.0, "text": "the second shot"}]}
        )
    (root / "broken.mp4").write_bytes(rng.integers(0, 256, 2048, dtype=np.uint8).tobytes())
    lines.append({"video": "broken.mp4", "captions": ["anything"]})
    (root / "input.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    write_synthetic_videos(root / "clips", 4, num_frames=40, size=32, fps=15, seed=2)
    return root


@pytest.fixture(scope="module")
def model() -> VideoTextModel:
    torch.manual_seed(0)
    return VideoTextModel(create_backbone("vit_test"), text="text_test", proj_dim=32).eval()


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    torch.manual_seed(0)
    return FeatureExtractor(create_backbone("vit_test", num_frames=4).eval(), frames_per_window=4, size=32)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """One local Ray instance for the module: 2 CPUs, no dashboard, no usage report, its files in
    the test's temporary folder; two model actors and CPU tasks share the 2 CPUs."""
    ray = pytest.importorskip("ray")
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
        log_to_driver=False,
        logging_level="WARNING",
        # the workers import this checkout's vidlit, as the test does
        runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}},
        # idle workers live on between the runs of a test instead of a second (each imports torch)
        _system_config={"idle_worker_killing_time_threshold_ms": 120_000},
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield RayOptions(workers=2, cpus_per_worker=0.5, cpus_per_task=0.5)
    ray.shutdown()
    patch.undo()


def test_partitions_are_consecutive_and_fixed():
    parts = split_partitions(list("abcde"), list("ABCDE"), 2)
    assert [(p.index, p.items, p.names) for p in parts] == [
        (0, ("a", "b"), ("A", "B")),
        (1, ("c", "d"), ("C", "D")),
        (2, ("e",), ("E",)),
    ]
    assert parts[1].marker == "partitions/part-000001.json"
    with pytest.raises(ValueError, match="must be positive"):
        split_partitions([1], ["x"], 0)


@pytest.mark.slow  # starts the module's Ray instance
def test_ray_refuses_a_pool_that_leaves_no_cpu_to_decode(sources, extractor, ray_cluster, tmp_path):
    """Two 1-CPU model actors on 2 CPUs would leave the decoding tasks none: refused, not a hang.
    (The first test to need the module's Ray instance: Ray's startup is its setup.)"""
    listing = sources / "clips" / "videos.csv"
    with pytest.raises(ValueError, match=r"--ray-workers 2: 2 model actors of 1 CPU each leave no CPU"):
        extract_features(
            extractor, listing, tmp_path / "f", engine="ray", ray=RayOptions(workers=2), **EXTRACT
        )
    assert not list((tmp_path / "f").rglob("*.pt"))  # refused before any video was read


@pytest.fixture(scope="module")
def curated(sources, model, ray_cluster, tmp_path_factory):
    """The same sources curated by the local engine and by Ray (one model actor, one CPU task at a
    time: each new actor or task worker process imports torch and vidlit, the most of a run's cost
    on 2 CPUs; the resume below runs two actors): ``(local result, Ray result, local folder, Ray
    folder)``; shared by the two tests below."""
    from vidlit.core.device import torch_threads

    out = tmp_path_factory.mktemp("curated")
    with torch_threads(1):
        local = curate(model, sources / "input.jsonl", out / "local", videos_per_partition=2, **CURATE)
        on_ray = curate(
            model,
            sources / "input.jsonl",
            out / "ray",
            videos_per_partition=2,
            engine="ray",
            ray=RayOptions(workers=1, cpus_per_worker=0.5, cpus_per_task=1.0),
            **CURATE,
        )
    return local, on_ray, out / "local", out / "ray"


CURATED_FILES = [
    "curate_manifest.json",
    "curated.jsonl",
    "partitions/part-000000.json",
    "partitions/part-000001.json",
    "partitions/part-000002.json",
    "shards/shard-000000.jsonl",
    "shards/shard-000000.tar",
    "shards/shard-000001.jsonl",
    "shards/shard-000001.tar",
]  # partition 2 holds only the corrupt video: no shard


@pytest.mark.slow
def test_curate_on_ray_writes_what_the_local_engine_writes(curated):
    local, on_ray, local_dir, ray_dir = curated
    # per video: clip 1 pairs with the untimed caption, clip 2 with both: 3 pairs, all kept
    assert (local.processed, len(local.failed), local.kept) == (4, 1, 12)
    assert (on_ray.processed, on_ray.kept, on_ray.pairs) == (local.processed, local.kept, local.pairs)
    expected = _files(local_dir)
    assert sorted(expected) == CURATED_FILES
    assert _files(ray_dir) == expected  # byte for byte: shards, JSONL, manifest, markers


@pytest.mark.slow
def test_curate_on_ray_resumes_what_a_killed_run_left(
    sources, model, ray_cluster, curated, tmp_path, one_thread
):
    _, _, local_dir, ray_dir = curated
    expected = _files(local_dir)
    out = tmp_path / "ray"
    shutil.copytree(ray_dir, out)
    # a killed run: partition 1's shard written, its marker not yet
    (out / "partitions" / "part-000001.json").unlink()
    # the partitions do not depend on the worker count: resume with two model actors (one wrote it)
    again = curate(
        model, sources / "input.jsonl", out, videos_per_partition=2, engine="ray", ray=ray_cluster, **CURATE
    )
    # partition 1 is redone, and partition 2 (its corrupt video is retried); partition 0 is skipped
    assert (again.processed, again.resumed, len(again.failed)) == (2, 2, 1)
    assert again.shards == [str(out / "shards" / "shard-000001.tar")]
    assert _files(out) == expected
    # the local engine reruns only the partition with the failed video; the same files again
    rerun = curate(model, sources / "input.jsonl", out, videos_per_partition=2, **CURATE)
    assert (rerun.processed, rerun.resumed, len(rerun.failed), rerun.shards) == (0, 4, 1, [])
    assert _files(out) == expected

    # another threshold is refused before anything runs, on either engine
    with pytest.raises(ValueError, match=r"curated otherwise \(threshold -1.0 -> 0.5\)"):
        curate(model, sources / "input.jsonl", out, videos_per_partition=2, engine="ray",
               ray=ray_cluster, **{**CURATE, "threshold": 0.5})  # fmt: skip
    with pytest.raises(ValueError, match=r"curated otherwise \(videos_per_partition 2 -> 3\)"):
        curate(model, sources / "input.jsonl", out, videos_per_partition=3, engine="ray", **CURATE)


@pytest.mark.slow
def test_curate_with_captioning_on_ray_matches_the_local_engine(
    sources, model, ray_cluster, tmp_path, one_thread
):
    """The captioner and the summarizer travel to the model actors with the video-text model."""
    from vidlit.captioning import ImageCaptioner, LMSummarizer, write_test_models

    tiny = write_test_models(tmp_path / "models")
    generation = {"max_new_tokens": 4, "min_new_tokens": 2}
    caption = {
        "caption": "coarse,fine",
        "captioner": ImageCaptioner(tiny["blip"], batch_size=4, **generation),
        "summarizer": LMSummarizer(tiny["t5"], "Frames: {captions} Video:", **generation),
        "fine_frames": 2,
    }
    two = tmp_path / "two.jsonl"
    two.write_text("".join((sources / "input.jsonl").read_text().splitlines(True)[:2]))
    for name in ("v0.mp4", "v1.mp4"):
        (tmp_path / name).symlink_to(sources / name)
    local = curate(model, two, tmp_path / "local", videos_per_partition=1, **caption, **CURATE)
    on_ray = curate(
        model,
        two,
        tmp_path / "ray",
        videos_per_partition=1,
        engine="ray",
        ray=ray_cluster,
        **caption,
        **CURATE,
    )
    assert local.kept == on_ray.kept == 2 * (3 + 2 * 2)  # + the coarse and the fine caption of each clip
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")


@pytest.fixture(scope="module")
def extracted(sources, extractor, ray_cluster, tmp_path_factory):
    """The clips' features extracted by the local engine and by Ray (one model actor, as for
    ``curated``; the resume below runs two), partitions of 3 videos: ``(local summary, Ray summary,
    local folder, Ray folder)``; shared by the tests below."""
    from vidlit.core.device import torch_threads

    listing = sources / "clips" / "videos.csv"
    out = tmp_path_factory.mktemp("extracted")
    with torch_threads(1):
        local = extract_features(extractor, listing, out / "local", videos_per_partition=3, **EXTRACT)
        one_worker = RayOptions(workers=1, cpus_per_worker=0.5, cpus_per_task=1.0)
        on_ray = extract_features(
            extractor, listing, out / "ray", videos_per_partition=3, engine="ray", ray=one_worker, **EXTRACT
        )
    return local, on_ray, out / "local", out / "ray"


@pytest.mark.slow
def test_extract_on_ray_writes_what_the_local_engine_writes(extracted):
    local, on_ray, local_dir, ray_dir = extracted
    assert on_ray.written == local.written == ["000000", "000001", "000002", "000003"]
    expected = _files(local_dir)
    assert "partitions/part-000001.json" in expected and "000003.pt" in expected
    assert _files(ray_dir) == expected  # the same tensors, the same bytes


@pytest.mark.slow
def test_extract_on_ray_resumes_what_a_killed_run_left(
    sources, extractor, ray_cluster, extracted, tmp_path, one_thread
):
    listing = sources / "clips" / "videos.csv"
    expected = _files(extracted[2])
    out = tmp_path / "ray"
    shutil.copytree(extracted[3], out)
    (out / "000001.pt").unlink()  # a killed run: one file of partition 0 lost
    (out / "partitions" / "part-000001.json").unlink()  # partition 1 unmarked, files kept
    # two model actors, one per pending partition (one actor wrote the folder)
    again = extract_features(
        extractor, listing, out, videos_per_partition=3, engine="ray", ray=ray_cluster, **EXTRACT
    )
    assert again.written == ["000001"] and again.existing == ["000000", "000002", "000003"]
    assert _files(out) == expected
    with pytest.raises(ValueError, match=r"extracted otherwise \(feature_stride 16 -> 8\)"):
        extract_features(extractor, listing, out, engine="ray", ray=ray_cluster, **{**EXTRACT, "stride": 8})


@pytest.mark.slow
def test_extract_on_ray_with_one_video_to_do_and_a_ray_address(
    sources, extractor, ray_cluster, extracted, tmp_path, caplog, one_thread
):
    """One video to do: one 1-CPU actor of --ray-workers 2 leaves a CPU to decode on 2 CPUs; a
    --ray-address when this process already joined a cluster is said to be ignored."""
    listing = sources / "clips" / "videos.csv"
    expected = _files(extracted[2])
    out = tmp_path / "ray"
    shutil.copytree(extracted[3], out)
    (out / "000001.pt").unlink()
    (out / "partitions" / "part-000000.json").unlink()
    with caplog.at_level("WARNING"):
        one = extract_features(extractor, listing, out, engine="ray", videos_per_partition=3,
                               ray=RayOptions(address="auto", workers=2), **EXTRACT)  # fmt: skip
    assert one.written == ["000001"] and _files(out) == expected
    assert "--ray-address auto ignored: this process already joined a Ray cluster" in caplog.text


def test_curate_and_extract_write_to_fsspec_urls(sources, model, extractor, tmp_path, one_thread):
    """Part of the object-storage story: the same files land in ``memory://`` (an object store's
    semantics: one PUT per file) and under a ``file://`` URL as in a local folder."""
    one = tmp_path / "one.jsonl"
    one.write_text("".join((sources / "input.jsonl").read_text().splitlines(True)[:2]))
    for name in ("v0.mp4", "v1.mp4"):
        (tmp_path / name).symlink_to(sources / name)
    local = curate(model, one, tmp_path / "local", **CURATE)
    url = "memory://vidlit-test/curated"
    remote = curate(model, one, url, **CURATE)
    assert remote.jsonl == f"{url}/curated.jsonl" and remote.shards == [f"{url}/shards/shard-000000.tar"]
    memory = fsspec.filesystem("memory")
    expected = _files(tmp_path / "local")
    assert {name: memory.cat_file(f"/vidlit-test/curated/{name}") for name in expected} == expected
    assert (
        len(list(VideoTextShards(remote.shards, num_frames=2))) == local.kept
    )  # shards read back from there
    rerun = curate(model, one, url, **CURATE)
    assert (rerun.processed, rerun.resumed) == (0, 2)
    with pytest.raises(
        ValueError, match=r"memory://vidlit-test/curated/curate_manifest.json: this folder was"
    ):
        curate(model, one, url, **{**CURATE, "threshold": 0.0})

    listing = sources / "clips" / "videos.csv"
    extract_features(extractor, listing, tmp_path / "features", **EXTRACT)
    expected = _files(tmp_path / "features")
    extract_features(extractor, listing, f"file://{tmp_path}/by_url", **EXTRACT)
    assert _files(tmp_path / "by_url") == expected
    summary = extract_features(extractor, listing, "memory://vidlit-test/features", **EXTRACT)
    assert {name: memory.cat_file(f"/vidlit-test/features/{name}") for name in expected} == expected
    folder = OutputFolder("memory://vidlit-test/features")
    folder.remove("000002.pt")
    again = extract_features(extractor, listing, "memory://vidlit-test/features", **EXTRACT)
    assert again.written == ["000002"] and len(summary.written) == 4
    memory.rm("/vidlit-test", recursive=True)


def test_local_engine_with_decoding_workers_writes_the_same_files(sources, extractor, tmp_path, one_thread):
    listing = sources / "clips" / "videos.csv"
    extract_features(extractor, listing, tmp_path / "inline", videos_per_partition=3, **EXTRACT)
    summary = extract_features(
        extractor, listing, tmp_path / "workers", videos_per_partition=3, num_workers=2, **EXTRACT
    )
    assert summary.written == ["000000", "000001", "000002", "000003"]
    assert _files(tmp_path / "workers") == _files(tmp_path / "inline")
