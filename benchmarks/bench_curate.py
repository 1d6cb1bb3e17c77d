"""Benchmark: ``vidlit curate``: clips/s per stage, and the local engine against Ray Data.

**Stages** (``--part stages``): curates the synthetic InternVid source videos
(``vidlit data synth internvid``) with InternVid's two caption scales and reports, per stage,
the seconds :func:`vidlit.curate.curate` spent and the clips per second that stage alone would
sustain (clips / stage seconds):

- ``shots``: PySceneDetect on each source video;
- ``decode``: the captioners' frames (the middle frame + ``--fine-frames`` per clip);
- ``caption``: the image captioner(s) on them (coarse and fine share one model here);
- ``summarize``: the LM fusing each clip's frame captions into one description;
- ``score``: the video-text model's frames, ``encode_video`` and ``encode_text``;
- ``write``: re-encoding the kept clips for the shards.

**Engines** (``--part engines``): curates the same synthetic sources (scoring only, every pair
kept, so every clip is also re-encoded for the shards) with the local engine and with the Ray
Data engine at 1 and 2 model workers (actors), on a local Ray instance with ``--ray-cpus`` CPUs,
and prints clips/s for each and the scaling factor (2 workers over 1). Each figure is end to
end, Ray's actor start-up included, as a user would time ``vidlit curate --engine ray``; the
outputs of all runs are checked to be identical.

By default every model is a tiny random-weight one (:func:`vidlit.captioning.write_test_models`:
1-layer BLIP and T5 with MiniLM's vocabulary; ``vit_test`` + ``text_test`` scoring), so the
figures measure vidlit's pipeline overhead, not a released captioner's cost. Pass
``--captioner`` / ``--summarizer`` (hub ids or folders) and ``--device cuda`` to time real ones.

    python benchmarks/bench_curate.py                      # tiny models, CPU, both parts
    python benchmarks/bench_curate.py --part engines --videos 16 --ray-cpus 2 --cpus-per-worker 0.5
    python benchmarks/bench_curate.py --captioner Salesforce/blip2-opt-2.7b \\
        --summarizer mrm8488/flan-t5-large-finetuned-openai-summarize_from_feedback \\
        --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vidlit.backbones import create_backbone
from vidlit.backbones.video_text import VideoTextModel
from vidlit.captioning import ImageCaptioner, LMSummarizer, write_test_models
from vidlit.curate import curate
from vidlit.data.synth.internvid import write_internvid

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Frames of one video, in order:\n{captions}\nOne sentence describing the video:"


def _sources(tmp: Path, videos: int) -> Path:
    """The synthetic InternVid source videos and a curation input naming them."""
    data = write_internvid(tmp / "src", num_train_videos=videos, num_val_videos=1, clips_per_video=3)
    sources = tmp / "sources.jsonl"
    sources.write_text(
        "".join(
            json.dumps({"video": str(v), "captions": ["a video"]}) + "\n"
            for v in sorted((data / "videos").glob("*.mp4"))
        )
    )
    return sources


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def engines(options: argparse.Namespace) -> None:
    """clips/s of the local engine and of Ray Data with 1 and 2 model workers, same sources."""
    import ray

    from vidlit.engines import RayOptions

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    torch.manual_seed(0)
    model = VideoTextModel(create_backbone("vit_test"), text="text_test", proj_dim=32).eval()
    settings = {
        "threshold": -1.0,
        "min_shot_frames": 6,
        "min_clip_seconds": 0.5,
        "max_clip_seconds": 1.6,
        "videos_per_partition": options.videos_per_partition,
        "progress": False,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = _sources(tmp, options.videos)
        ray.init(
            num_cpus=options.ray_cpus,
            include_dashboard=False,
            _temp_dir=str(tmp / "ray"),
            log_to_driver=False,
            logging_level="WARNING",
            runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(options.threads)}},
        )
        ray.data.DataContext.get_current().enable_progress_bars = False
        runs = {"local": {}}
        runs.update(
            {
                f"ray, {w} worker{'s' if w > 1 else ''}": {
                    "engine": "ray",
                    "ray": RayOptions(
                        workers=w,
                        cpus_per_worker=options.cpus_per_worker,
                        cpus_per_task=options.cpus_per_worker,
                    ),
                }
                for w in (1, 2)
            }
        )
        rates: dict[str, list[float]] = {name: [] for name in runs}
        if options.warmup:  # start Ray's worker processes (imports) before timing; actors restart per run
            for name in runs:
                curate(model, sources, tmp / f"warmup_{name}", **settings, **runs[name])
        load_before = os.getloadavg()
        clips, outputs = 0, {}
        for r in range(options.rounds):
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            for name in order:
                out = tmp / f"out_{len(outputs)}"
                started = time.perf_counter()
                summary = curate(model, sources, out, **settings, **runs[name])
                rates[name].append(summary.clips / (time.perf_counter() - started))
                clips = summary.clips
                outputs[name] = _tree(out)
        load_after = os.getloadavg()
        ray.shutdown()
    identical = all(tree == outputs["local"] for tree in outputs.values())
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"ray {ray.__version__}; {options.videos} videos, {clips} clips, "
        f"{options.videos_per_partition} videos per partition; Ray: {options.ray_cpus} CPUs, "
        f"{options.cpus_per_worker} CPU per actor and per task"
    )
    print(
        f"# load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
        f"outputs identical: {identical}"
    )
    print("| engine | clips/s (median of rounds) | range |")
    print("|---|---:|---:|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f}-{max(values):.2f} |")
    one, two = (statistics.median(rates[k]) for k in ("ray, 1 worker", "ray, 2 workers"))
    print(f"scaling factor, Ray 2 workers / 1 worker: {two / one:.2f}x")
    print(f"Ray 1 worker / local: {one / statistics.median(rates['local']):.2f}x")


def stages(options: argparse.Namespace) -> None:
    """clips/s per stage of ``curate --caption coarse,fine`` (local engine)."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_internvid(
            tmp / "src", num_train_videos=options.videos, num_val_videos=1, clips_per_video=3
        )
        sources = tmp / "sources.jsonl"
        sources.write_text(
            "".join(json.dumps({"video": str(v)}) + "\n" for v in sorted((data / "videos").glob("*.mp4")))
        )
        tiny = write_test_models(tmp / "models") if not (options.captioner and options.summarizer) else {}
        generation = {"max_new_tokens": options.max_new_tokens, "min_new_tokens": 2}
        captioner = ImageCaptioner(
            options.captioner or tiny["blip"],
            device=options.device,
            dtype=options.dtype,
            batch_size=options.batch_size,
            **generation,
        )
        summarizer = LMSummarizer(
            options.summarizer or tiny["t5"], PROMPT, device=options.device, dtype=options.dtype, **generation
        )
        torch.manual_seed(0)
        model = VideoTextModel(create_backbone("vit_test"), text="text_test", proj_dim=32).eval()
        load_before = os.getloadavg()
        started = time.perf_counter()
        summary = curate(
            model,
            sources,
            tmp / "out",
            threshold=-1.0,
            min_shot_frames=6,
            min_clip_seconds=0.5,
            max_clip_seconds=1.6,  # the synthetic videos hold 1.6 s windows of different content
            caption="coarse,fine",
            captioner=captioner,
            summarizer=summarizer,
            fine_frames=options.fine_frames,
            device=options.device,
            progress=False,
        )
        total = time.perf_counter() - started
        load_after = os.getloadavg()

    names = (
        captioner.name if options.captioner else "tiny BLIP",
        summarizer.name if options.summarizer else "tiny T5",
    )
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{options.threads} thread(s), device {options.device}; captioner {names[0]}, summarizer {names[1]}; "
        f"{options.fine_frames} fine frames/clip"
    )
    print(f"# load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"# {summary.processed} videos, {summary.clips} clips, {summary.pairs} pairs, {total:.1f} s in all")
    print("| stage | seconds | clips/s |")
    print("|---|---:|---:|")
    for stage, seconds in summary.seconds.items():
        print(f"| {stage} | {seconds:.2f} | {summary.clips / seconds if seconds else float('inf'):.1f} |")
    print(f"| all | {total:.2f} | {summary.clips / total:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("stages", "engines", "both"), default="both")
    parser.add_argument("--videos", type=int, default=8, help="synthetic source videos")
    parser.add_argument("--fine-frames", type=int, default=4)
    parser.add_argument("--captioner", help="default: a tiny random BLIP")
    parser.add_argument("--summarizer", help="default: a tiny random T5")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--videos-per-partition", dest="videos_per_partition", type=int, default=2)
    parser.add_argument(
        "--ray-cpus", dest="ray_cpus", type=int, default=os.cpu_count(), help="the Ray instance's CPUs"
    )
    parser.add_argument(
        "--cpus-per-worker",
        dest="cpus_per_worker",
        type=float,
        default=1.0,
        help="CPUs per Ray actor and task",
    )
    parser.add_argument("--rounds", type=int, default=1, help="engine rounds, alternating the order")
    parser.add_argument("--warmup", action="store_true", help="one untimed run of each engine first")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    if options.part in ("stages", "both"):
        stages(options)
    if options.part in ("engines", "both"):
        engines(options)


if __name__ == "__main__":
    main()
