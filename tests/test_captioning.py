"""InternVid's multi-scale captioning: captioners, summarizers (local LM and HTTP), and curate with them.

Every model is a real transformers class with tiny random weights built offline
(:func:`vidlit.captioning.write_test_models`); the HTTP endpoint is a server this module starts
on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from vidlit.backbones import create_backbone
from vidlit.backbones.video_text import VideoTextModel
from vidlit.captioning import (
    HTTPSummarizer,
    ImageCaptioner,
    LMSummarizer,
    SummarizerError,
    format_prompt,
    write_test_models,
)
from vidlit.curate import curate
from vidlit.data.internvid import parse_timestamp
from vidlit.data.sampling import uniform_segments
from vidlit.data.synth.videos import write_video
from vidlit.data.video import open_video

PROMPT = "Frames of one video, in order:\n{captions}\nOne sentence describing the video:"
FPS = 15
# one video per partition: the resume below skips the first video alone
OPTIONS = {"min_shot_frames": 6, "min_clip_seconds": 0.5, "progress": False, "threshold": -1.0,
           "videos_per_partition": 1}  # fmt: skip
GEN = {"max_new_tokens": 4, "min_new_tokens": 2}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return write_test_models(tmp_path_factory.mktemp("caption_models"))


@pytest.fixture(scope="module")
def blip(models) -> ImageCaptioner:
    return ImageCaptioner(models["blip"], batch_size=4, **GEN)


@pytest.fixture(scope="module")
def gpt2(models) -> LMSummarizer:
    return LMSummarizer(models["gpt2"], PROMPT, **GEN)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """Two 3 s videos of two hard-cut shots each, no captions in the input."""
    root = tmp_path_factory.mktemp("caption_sources")
    rng = np.random.default_rng(0)
    lines = []
    for v in range(2):
        shots = []
        for s, colour in enumerate([(200, 40, 40), (40, 40, 200)][:: 1 - 2 * v]):
            frames = np.clip(np.asarray(colour) + rng.integers(-6, 7, (20, 48, 64, 3)), 0, 255).astype(
                np.uint8
            )
            frames[:, 10 + 10 * s : 30 + 10 * s, 20:40] = 255
            shots.append(frames)
        write_video(root / f"v{v}.mp4", np.concatenate(shots), fps=FPS)
        lines.append({"video": f"v{v}.mp4"})
    (root / "input.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


@pytest.fixture(scope="module")
def model() -> VideoTextModel:
    torch.manual_seed(0)
    return VideoTextModel(create_backbone("vit_test"), text="text_test", proj_dim=32).eval()


class _Endpoint(BaseHTTPRequestHandler):
    """``/ok/v1/chat/completions`` answers with the prompt's line count; ``/fail/...`` answers 500;
    ``/slow/...`` answers after 0.6 s."""

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, body))
        if self.path.startswith("/slow/"):
            time.sleep(0.6)  # past the client's timeout
        if self.path.startswith("/fail/"):
            self.send_error(500, "model crashed")
            return
        content = body["messages"][0]["content"]
        reply = {
            "choices": [
                {"message": {"role": "assistant", "content": f"  {len(content.splitlines())} lines "}}
            ]
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_captioners_generate_one_string_per_frame_in_batches(models, blip, one_thread):
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (5, 40, 56, 3), dtype=np.uint8))
    captions = blip.caption(frames)
    assert len(captions) == 5 and all(isinstance(c, str) and c for c in captions)
    whole = ImageCaptioner(models["blip"], batch_size=8, **GEN).caption(frames)
    assert whole == captions  # batching does not change greedy captions
    git = ImageCaptioner(models["git"], batch_size=2, **GEN)
    assert type(git.model).__name__ == "GitForCausalLM" and type(blip.model).__name__.startswith("Blip")
    git_captions = git.caption(frames)
    assert len(git_captions) == 5 and all(isinstance(c, str) and c for c in git_captions)
    # the caption is what generate() produced for the frame, decoded
    inputs = git.processor(images=[frames[0].numpy()], return_tensors="pt")
    ids = git.model.generate(pixel_values=inputs["pixel_values"], **git.generate_kwargs)
    assert git.processor.batch_decode(ids, skip_special_tokens=True)[0].strip() == git_captions[0]
    with pytest.raises(FileNotFoundError, match="no config.json"):
        ImageCaptioner(models["blip"].parent)
    half = ImageCaptioner(models["blip"], dtype="bfloat16", **GEN)  # the dtype option: weights and inputs
    assert half.model.dtype == torch.bfloat16 and all(isinstance(c, str) for c in half.caption(frames[:2]))
    with pytest.raises(ValueError, match="dtype must be one of"):
        ImageCaptioner(models["blip"], dtype="int8")


@pytest.mark.parametrize("name", ["gpt2", "t5"])
def test_lm_summarizer_gets_the_frame_captions_in_order(models, name, one_thread):
    summarizer = LMSummarizer(models[name], PROMPT, **GEN)
    seen = []
    stack = summarizer.model.get_encoder() if summarizer.seq2seq else summarizer.model
    hook = stack.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("input_ids", args[0] if args else None)),
        with_kwargs=True,
    )
    captions = ["a red square", "a square moves right", "a blue circle"]
    text = summarizer.summarize(captions)
    hook.remove()
    assert isinstance(text, str) and text
    # the LM's first forward read the whole prompt: the captions numbered, one a line, in order
    prompt = summarizer.tokenizer.decode(seen[0][0], skip_special_tokens=True)
    expected = format_prompt(PROMPT, captions)
    assert prompt == summarizer.tokenizer.decode(
        summarizer.tokenizer(expected)["input_ids"], skip_special_tokens=True
    )
    assert (
        prompt.index("1. a red square")
        < prompt.index("2. a square moves right")
        < prompt.index("3. a blue circle")
    )
    with pytest.raises(ValueError, match="must contain '{captions}'"):
        LMSummarizer(models[name], "no placeholder")


def test_http_summarizer_answers_and_fails_after_bounded_retries(endpoint):
    base = f"http://127.0.0.1:{endpoint.server_port}"
    ok = HTTPSummarizer(f"{base}/ok/v1", "tiny-llm", PROMPT, timeout=5, retries=2, backoff=0.01)
    assert ok.summarize(["first", "second"]) == "4 lines"  # the prompt: header, two captions, question
    path, body = endpoint.requests[0]
    assert path == "/ok/v1/chat/completions" and body["model"] == "tiny-llm"
    assert body["messages"][0]["content"] == format_prompt(PROMPT, ["first", "second"])
    endpoint.requests.clear()
    failing = HTTPSummarizer(f"{base}/fail/v1", "tiny-llm", PROMPT, timeout=5, retries=2, backoff=0.01)
    with pytest.raises(SummarizerError, match=r"/fail/v1/chat/completions: 3 tries failed, last: HTTP 500"):
        failing.summarize(["first"])
    assert len(endpoint.requests) == 3  # one try and two retries, no more
    with pytest.raises(ValueError, match="http:// or https://"):
        HTTPSummarizer("127.0.0.1:1", "m", PROMPT)
    endpoint.requests.clear()
    slow = HTTPSummarizer(f"{base}/slow/v1", "tiny-llm", PROMPT, timeout=0.2, retries=1, backoff=0.01)
    with pytest.raises(SummarizerError, match=r"2 tries failed, last: (TimeoutError|URLError): .*timed out"):
        slow.summarize(["first"])


def test_captioning_flags_build_the_plugins_and_name_what_is_missing(models, endpoint):
    from vidlit.curate import build_captioning, build_parser

    def options(*flags):
        return build_parser().parse_args(["in.jsonl", "--ckpt_path", "x.ckpt", "--out", "o", *flags])

    assert build_captioning(options()) == (None, None, None)
    with pytest.raises(ValueError, match="--caption needs --captioner"):
        build_captioning(options("--caption", "coarse"))
    with pytest.raises(ValueError, match="--caption fine needs --summary_prompt"):
        build_captioning(options("--caption", "coarse,fine", "--captioner", str(models["blip"])))
    url = f"http://127.0.0.1:{endpoint.server_port}/ok/v1"
    flags = ["--caption", "fine", "--captioner", str(models["blip"]), "--fine_captioner", str(models["git"])]
    flags += ["--summarizer_url", url, "--summarizer_model", "served", "--summary_prompt", PROMPT]
    captioner, fine, summarizer = build_captioning(options(*flags, "--summarizer_retries", "0"))
    assert type(fine.model).__name__ == "GitForCausalLM" and isinstance(summarizer, HTTPSummarizer)
    assert (summarizer.name, summarizer.url, summarizer.retries) == ("served", f"{url}/chat/completions", 0)
    assert summarizer.summarize(fine.caption(torch.zeros(2, 32, 32, 3, dtype=torch.uint8))) == "4 lines"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_curate_captions_clips_at_both_scales_scores_and_resumes(
    sources, model, models, blip, gpt2, tmp_path, one_thread, monkeypatch
):
    monkeypatch.setattr("vidlit.curate.CAPTION_GROUP", 1)  # each clip its own group: the order holds
    git = ImageCaptioner(models["git"], batch_size=4, **GEN)
    first_input = tmp_path / "first.jsonl"
    first_input.write_text((sources / "input.jsonl").read_text().splitlines(True)[0])
    shutil.copy(sources / "v0.mp4", tmp_path)
    caption = {"caption": "coarse,fine", "captioner": blip, "fine_captioner": git, "summarizer": gpt2}
    out = tmp_path / "out"
    first = curate(model, first_input, out, fine_frames=3, **caption, **OPTIONS)
    # two shots, two candidates each (the coarse and the fine caption), all kept at threshold -1
    assert (first.processed, first.clips, first.pairs, first.kept, first.summary_failures) == (1, 2, 4, 4, 0)
    rows = _rows(first.jsonl)
    assert [r["Caption_scale"] for r in rows] == ["coarse", "fine", "coarse", "fine"]
    for row in rows:
        assert (
            row["Caption"] == row[f"{row['Caption_scale'].title()}_caption"] and -1 <= row["UMT_Score"] <= 1
        )
        assert (row["Coarse_captioner"], row["Fine_captioner"]) == (str(models["blip"]), str(models["git"]))
        assert row["Summarizer"] == str(models["gpt2"]) and len(row["Frame_captions"]) == 3
        assert all(
            isinstance(c, str) and c
            for c in [row["Coarse_caption"], row["Fine_caption"], *row["Frame_captions"]]
        )
    # the captions are the captioners' on the frames decoded from the clip: the middle frame (coarse)
    # and segment centres (fine); the fine caption is the LM's on those frame captions, in order
    with open_video(sources / "v0.mp4") as reader:
        for row in rows[::2]:
            a, b = (round(parse_timestamp(row[k]) * FPS) for k in ("Start_timestamp", "End_timestamp"))
            assert blip.caption(reader.get_frames(np.asarray([a + (b - a) // 2]))) == [row["Coarse_caption"]]
            frames = reader.get_frames(a + uniform_segments(b - a, 3, train=False))
            assert git.caption(frames) == row["Frame_captions"]
            assert gpt2.summarize(row["Frame_captions"]) == row["Fine_caption"]
    settings = json.loads((out / "curate_manifest.json").read_text())["settings"]
    assert settings["caption"] == ["coarse", "fine"] and settings["summary_prompt"] == PROMPT
    assert (settings["captioner"], settings["summarizer"]) == (str(models["blip"]), str(models["gpt2"]))

    # the whole list: the finished video is skipped, the other captioned
    second = curate(model, sources / "input.jsonl", out, fine_frames=3, **caption, **OPTIONS)
    assert (second.processed, second.resumed, second.kept) == (1, 1, 4)
    assert [r["YoutubeID"] for r in _rows(second.jsonl)] == ["v0"] * 4 + ["v1"] * 4
    assert second.seconds["caption"] > 0 and second.seconds["summarize"] > 0 and second.seconds["decode"] > 0

    # another prompt or another captioner is another curation: refused
    other = LMSummarizer(models["gpt2"], "Summarize: {captions}", **GEN)
    with pytest.raises(
        ValueError, match=r"curated otherwise \(summary_prompt 'Frames of o\.\.\. -> 'Summarize: "
    ):
        curate(
            model, sources / "input.jsonl", out, fine_frames=3, **{**caption, "summarizer": other}, **OPTIONS
        )
    with pytest.raises(ValueError, match=r"curated otherwise \(fine_captioner"):
        curate(
            model,
            sources / "input.jsonl",
            out,
            fine_frames=3,
            **{**caption, "fine_captioner": blip},
            **OPTIONS,
        )
    with pytest.raises(ValueError, match="caption 'fine' needs a captioner"):
        curate(model, sources / "input.jsonl", tmp_path / "x", caption="fine", captioner=blip, **OPTIONS)


def test_a_failing_summarizer_is_recorded_per_clip_and_the_run_goes_on(
    sources, model, blip, endpoint, tmp_path, one_thread
):
    failing = HTTPSummarizer(
        f"http://127.0.0.1:{endpoint.server_port}/fail/v1",
        "tiny-llm",
        PROMPT,
        timeout=5,
        retries=1,
        backoff=0.01,
    )
    summary = curate(
        model, sources / "input.jsonl", tmp_path / "out", caption=["coarse", "fine"], captioner=blip,
        summarizer=failing, fine_frames=8, fine_fps=3.0, **OPTIONS,
    )  # fmt: skip
    assert (summary.processed, summary.clips, summary.summary_failures) == (2, 4, 4)
    assert len(endpoint.requests) == 8  # 4 clips x (1 try + 1 retry)
    rows = _rows(summary.jsonl)
    assert [r["Caption_scale"] for r in rows] == ["coarse"] * 4  # only the coarse caption is a candidate
    assert all(
        r["Fine_caption"] is None and "2 tries failed, last: HTTP 500" in r["Summary_error"] for r in rows
    )
    assert all(len(r["Frame_captions"]) == 4 for r in rows)  # fine_fps 3 on 20-frame (1.33 s) clips
    manifest = json.loads((tmp_path / "out" / "curate_manifest.json").read_text())
    failures = manifest["videos"]["v1.mp4"]["summary_failures"]
    assert manifest["settings"]["fine_fps"] == 3.0 and manifest["settings"]["fine_frames"] == 8
    assert [f["clip"] for f in failures] == [0, 1] and manifest["videos"]["v1.mp4"]["status"] == "done"


@pytest.mark.slow
def test_curate_command_captions_synthetic_sources_and_viclip_trains_on_the_shards(
    models, tmp_path, one_thread, fit_one_step
):
    """`vidlit curate --caption coarse,fine` with a ViCLIP checkpoint from `vidlit fit` and tiny
    captioners on the synthetic InternVid sources; recipes/pretrain_viclip.yaml then trains on the shards."""
    from vidlit.cli import main
    from vidlit.data.synth.internvid import write_internvid

    data = write_internvid(tmp_path / "internvid", num_train_videos=3, num_val_videos=2, clips_per_video=2)
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("model:\n  init_args:\n    text: text_test\n    proj_dim: 32\n")
    viclip = [
        "--config",
        "recipes/pretrain_viclip.yaml",
        "--config",
        str(tiny),
        "--data.init_args.batch_size",
        "4",
    ]
    ckpt = fit_one_step(*viclip, root=data, runs=tmp_path / "runs")

    sources = tmp_path / "sources.jsonl"
    videos = sorted((data / "videos").glob("*.mp4"))
    sources.write_text("".join(json.dumps({"video": str(v)}) + "\n" for v in videos))
    out = tmp_path / "curated"
    main(
        ["curate", str(sources), "--ckpt_path", str(ckpt), "--out", str(out), "--threshold", "-1"]
        + ["--min_shot_frames", "6", "--min_clip_seconds", "0.5", "--caption", "coarse,fine"]
        + ["--captioner", str(models["blip"]), "--fine_captioner", str(models["git"]), "--fine_frames", "2"]
        + [
            "--caption_max_new_tokens",
            "4",
            "--caption_min_new_tokens",
            "2",
            "--summarizer",
            str(models["t5"]),
        ]
        + ["--summary_prompt", PROMPT, "--summary_max_new_tokens", "6", "--summary_min_new_tokens", "2"]
    )
    rows = _rows(out / "curated.jsonl")
    assert {r["YoutubeID"] for r in rows} == {v.stem for v in videos}
    assert {r["Caption_scale"] for r in rows} == {"coarse", "fine"}
    assert all(
        r["Coarse_caption"] and r["Fine_caption"] and r["Summarizer"] == str(models["t5"]) for r in rows
    )
    manifest = json.loads((out / "curate_manifest.json").read_text())
    assert manifest["settings"]["summary_prompt"] == PROMPT

    shards = sorted((out / "shards").glob("shard-*.tar"))
    urls = str(shards[0]) if len(shards) == 1 else f"{out}/shards/shard-{{000000..{len(shards) - 1:06d}}}.tar"
    assert fit_one_step(
        *viclip, "--data.init_args.shards", urls, root=data, runs=tmp_path / "runs_curated"
    ).is_file()
