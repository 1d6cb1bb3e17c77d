"""Benchmark: ``vidlit curate --caption coarse,fine``, clips/s per stage.

Curates the synthetic InternVid source videos (``vidlit data synth internvid``) with InternVid's
two caption scales and reports, per stage, the seconds :func:`vidlit.curate.curate` spent and
the clips per second that stage alone would sustain (clips / stage seconds):

- ``shots``: PySceneDetect on each source video;
- ``decode``: the captioners' frames (the middle frame + ``--fine-frames`` per clip);
- ``caption``: the image captioner(s) on them (coarse and fine share one model here);
- ``summarize``: the LM fusing each clip's frame captions into one description;
- ``score``: the video-text model's frames, ``encode_video`` and ``encode_text``;
- ``write``: re-encoding the kept clips for the shards.

By default every model is a tiny random-weight one (:func:`vidlit.captioning.write_test_models`:
1-layer BLIP and T5 with MiniLM's vocabulary; ``vit_test`` + ``text_test`` scoring), so the
figures measure vidlit's pipeline overhead, not a released captioner's cost. Pass
``--captioner`` / ``--summarizer`` (hub ids or folders) and ``--device cuda`` to time real ones.

    python benchmarks/bench_curate.py                      # tiny models, CPU
    python benchmarks/bench_curate.py --captioner Salesforce/blip2-opt-2.7b \\
        --summarizer mrm8488/flan-t5-large-finetuned-openai-summarize_from_feedback \\
        --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from vidlit.backbones import create_backbone
from vidlit.backbones.video_text import VideoTextModel
from vidlit.captioning import ImageCaptioner, LMSummarizer, write_test_models
from vidlit.curate import curate
from vidlit.data.synth.internvid import write_internvid

PROMPT = "Frames of one video, in order:\n{captions}\nOne sentence describing the video:"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=8, help="synthetic source videos")
    parser.add_argument("--fine-frames", type=int, default=4)
    parser.add_argument("--captioner", help="default: a tiny random BLIP")
    parser.add_argument("--summarizer", help="default: a tiny random T5")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)

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


if __name__ == "__main__":
    main()
