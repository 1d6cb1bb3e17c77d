"""The HTTP API (FastAPI) and the pointing page of ``vidlit serve``.

Endpoints (OpenAPI docs at ``/docs``):

- ``GET /``: the pointing page (plain HTML/JS, no build step).
- ``GET /api/info``: model kind, class names, the start folder's videos, limits.
- ``POST /api/videos``: upload a video (multipart ``file``); ``POST /api/videos/folder``: open one
  from the folder given at start (``{"name": ...}``, confined to that folder).
- ``GET /api/videos/{video_id}/frames/{index}``: one frame as PNG (decoded by a reader kept open
  per video, closed when the video expires).
- ``POST /api/videos/{video_id}/query``: run the model on the whole video (an NLQ head: on the
  opened feature file with the question in ``texts``; a head on a key frame, Ego4D FHP / SCOD /
  STA: on the clip its data module samples for source frame ``frame``).
- ``POST /api/videos/{video_id}/region``: grow a region from points (or take a box) and run the
  model on it; an Ego4D STA head labels the box drawn on frame ``frame`` (noun, verb, time to
  contact).

Uploads are written under a temporary folder the server creates, with generated names (a client's
file name is never a path), limited in size, decoded once on arrival (an undecodable file is a 422
with the reason and is deleted), and deleted ``ttl`` seconds after their last use.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from vidlit.core.io import confined_path
from vidlit.data.features import FEATURE_SUFFIXES
from vidlit.data.video import ReaderCache, VideoDecodeError, stored_size
from vidlit.data.video import open_video as open_file
from vidlit.inference import Clip, Predictor, load
from vidlit.serve.regions import box_region, grow_region, to_token

__all__ = ["create_app", "serve_main"]

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")
_ID = re.compile(r"^[0-9a-f]{32}$")
PAGE = Path(__file__).with_name("page.html")


@dataclass
class _Video:
    path: Path
    clip: Clip
    owned: bool  # an upload (deleted on expiry), not a file of the start folder
    queries: bool = False  # an NLQ head's input: prepared anew with each query's text
    # (a key-frame head's input is prepared anew for each query's frame: see `takes_frame`)
    last_used: float = field(default_factory=time.monotonic)
    tokens: Any = None


class QueryRequest(BaseModel):
    """Whole-video query."""

    texts: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="prompts to rank (video-text models), or questions to localize (NLQ heads)",
    )
    frame: int | None = Field(
        None,
        ge=0,
        description="source frame a key-frame head (Ego4D FHP: pre_45, SCOD: PNR, STA: last observed) "
        "predicts for; None: its data module's default; ignored by other models",
    )


class RegionRequest(QueryRequest):
    """Region query: points (``[x, y]`` fractions of the frame) clicked on frame ``frame``, or a box."""

    frame: int = Field(0, ge=0, description="source frame the points were clicked on")
    points: list[tuple[float, float]] = Field(default_factory=list, max_length=32)
    box: tuple[float, float, float, float] | None = Field(None, description="x0, y0, x1, y1 as fractions")
    threshold: float = Field(0.5, ge=-1.0, le=1.0, description="feature similarity a token needs to join")
    method: Literal["grow", "sam2"] | None = Field(
        None, description="region from the built-in grower or SAM 2 (default: SAM 2 when the server has it)"
    )


class FolderRequest(BaseModel):
    """Open a video of the start folder by its name there."""

    name: str = Field(max_length=512)


class _Store:
    """The server-owned upload folder and the open videos, expired ``ttl`` seconds after last use.

    Frames are decoded by readers kept open per video (:class:`~vidlit.data.video.ReaderCache`,
    at most ``max_readers``, least recently used closed first): scrubbing asks for frame after
    frame of one video, and opening a file (indexing its packets) costs more than decoding a frame.
    A video's reader is closed when the video expires, all of them when the server stops.
    """

    def __init__(self, ttl: float, max_readers: int = 8):
        self.root = Path(tempfile.mkdtemp(prefix="vidlit-serve-"))
        self.ttl = ttl
        self.videos: dict[str, _Video] = {}
        self.lock = threading.Lock()
        self.readers = ReaderCache(size=max_readers)
        self.reader_lock = threading.Lock()  # a reader (and the cache) serves one request at a time

    def expire(self) -> None:
        now = time.monotonic()
        with self.lock:
            stale = [k for k, v in self.videos.items() if now - v.last_used > self.ttl]
            for key in stale:
                video = self.videos.pop(key)
                if not any(v.path == video.path for v in self.videos.values()):
                    with self.reader_lock:
                        self.readers.discard(video.path)
                if video.owned:
                    video.path.unlink(missing_ok=True)

    def get(self, video_id: str) -> _Video:
        if not _ID.match(video_id):
            raise HTTPException(422, f"video_id {video_id!r} is not a video id (32 hex digits)")
        self.expire()
        with self.lock:
            video = self.videos.get(video_id)
            if video is None:
                raise HTTPException(404, f"no open video {video_id} (expired or never uploaded)")
            video.last_used = time.monotonic()
            return video

    def close(self) -> None:
        with self.reader_lock:
            self.readers.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _frame_steps(clip: Clip, tubelet: int) -> list[int]:
    """Token time step shown at each source frame: that of the nearest sampled frame."""
    sampled = torch.as_tensor(clip.frame_indices[0], dtype=torch.float32)
    frames = torch.arange(clip.num_frames, dtype=torch.float32)
    nearest = (frames[:, None] - sampled[None]).abs().argmin(dim=1)
    return (nearest // tubelet).tolist()


def create_app(
    predictor: Predictor,
    folder: str | Path | None = None,
    max_upload_mb: float = 64.0,
    ttl: float = 3600.0,
    default_texts: list[str] | None = None,
    segmenter: Any = None,
) -> FastAPI:
    """Build the FastAPI app around a loaded :class:`~vidlit.inference.Predictor`.

    Args:
        predictor: the model.
        folder: videos the page may open by name (listed by ``/api/info``); None for uploads only.
        max_upload_mb: larger uploads are refused (413).
        ttl: seconds after its last use an open video (and an uploaded file) is dropped.
        default_texts: prompts the page starts with.
        segmenter: a :class:`~vidlit.serve.sam2_regions.Sam2Segmenter` for point / box prompts;
            None uses the built-in region grower only.
    """
    store = _Store(ttl)
    folder = Path(folder).resolve() if folder is not None else None
    max_bytes = int(max_upload_mb * 2**20)
    model_lock = threading.Lock()  # one forward pass at a time: requests queue, none interleave
    app = FastAPI(
        title="vidlit serve",
        description="Run a vidlit checkpoint on a video, or on a region of it chosen by points or a box.",
        version="1",
    )
    app.state.store = store
    app.router.on_shutdown.append(store.close)

    # a head on stored features (e.g. MQ) takes a feature file ([T, C] .pt / .npy) instead of a video
    suffixes = VIDEO_SUFFIXES if predictor.takes_video else FEATURE_SUFFIXES
    # a head whose input includes texts (NLQ) answers the page's natural-language queries
    queries = predictor.kind == "task" and "texts" in predictor.input_options
    # a head on a key frame (Ego4D FHP, SCOD, STA) predicts for the frame the page shows
    takes_frame = predictor.kind == "task" and "frame" in predictor.input_options
    # a head that labels given boxes (Ego4D STA) labels the box drawn on the page
    takes_boxes = predictor.kind == "task" and "detections" in predictor.input_options

    def with_frames(clip: Clip, path: Path) -> Clip:
        """A data module's clip of a video, with the frame count, rate and stored size the page shows.

        ``inference_inputs`` returns a batch only; a key-frame head's coordinates are pixels of the
        stored frames, so the page shows those (``frame`` decodes at ``clip.frame_size``).
        """
        if clip.num_frames or not predictor.takes_video:
            return clip
        with open_file(path, getattr(predictor.datamodule, "backend", "auto")) as reader:
            num_frames, fps = len(reader), reader.fps
        return dataclasses.replace(clip, num_frames=num_frames, fps=fps, frame_size=stored_size(path))

    def open_video(path: Path, owned: bool) -> dict[str, Any]:
        try:
            with model_lock:
                # an NLQ input is checked (and its duration found) with a placeholder query; each
                # real query prepares it again with its own text
                # an STA input likewise with a placeholder box; each region query brings the real one
                placeholder = [{"box": [0.0, 0.0, 1.0, 1.0], "score": 1.0}] if takes_boxes else None
                clip = predictor.prepare(
                    path, video_id=path.name, texts=["?"] if queries else None, detections=placeholder
                )
                clip = with_frames(clip, path)
        except (ValueError, FileNotFoundError, VideoDecodeError) as e:
            if owned:
                path.unlink(missing_ok=True)
            reason = str(e).replace(str(path), "the uploaded file" if owned else path.name)
            raise HTTPException(422, f"cannot read the video: {reason}") from None
        video_id = secrets.token_hex(16)
        with store.lock:
            store.videos[video_id] = _Video(path, clip, owned, queries)
        if not clip.num_frames:  # stored features: no frames to show, a timeline only
            duration = float(clip.batch["duration"][0])
            return {"video_id": video_id, "num_frames": 0, "fps": 0.0, "duration": duration, "frames": False}
        return {
            "video_id": video_id,
            "num_frames": clip.num_frames,
            "fps": clip.fps,
            "duration": clip.num_frames / clip.fps,
            "frames": True,
            "height": clip.frame_size[0],
            "width": clip.frame_size[1],
            # the frames a raw-video list samples (a data module's input samples per query: none)
            "sampled_frames": clip.frame_indices[0].tolist() if clip.frame_indices is not None else [],
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        """What the page needs to know: the model and the videos it may open."""
        names = []
        if folder is not None:
            names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in suffixes)
        head = getattr(predictor.module, "head", None)
        return {
            "kind": predictor.kind,
            "head": type(head).__name__ if head is not None else None,
            "layout": getattr(head, "feature_layout", None),
            "takes_video": predictor.takes_video,
            # an STA data module names its nouns
            "class_names": _names(predictor.datamodule, "class_names")
            or _names(predictor.datamodule, "noun_names"),
            "folder_videos": names,
            "default_texts": default_texts or [],
            "max_upload_mb": max_upload_mb,
            "accepts": list(suffixes),
            "sam2": segmenter is not None,
            "queries": queries,
            "takes_frame": takes_frame,
            "takes_boxes": takes_boxes,
            "verb_names": _names(predictor.datamodule, "verb_names"),
        }

    @app.post("/api/videos")
    async def upload(request: Request, file: UploadFile) -> dict[str, Any]:
        """Upload a video; it is stored under a generated name and decoded once to check it."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes + 2**16:
            raise HTTPException(413, f"upload larger than the {max_upload_mb:g} MB limit")
        suffix = Path(file.filename or "").suffix.lower()
        if suffix not in suffixes:
            raise HTTPException(
                415, f"unsupported file type {suffix or '(none)'}; expected one of {suffixes}"
            )
        store.expire()
        path = store.root / f"{secrets.token_hex(16)}{suffix}"
        size = 0
        with open(path, "wb") as out:
            while chunk := await file.read(2**20):
                size += len(chunk)
                if size > max_bytes:
                    out.close()
                    path.unlink(missing_ok=True)
                    raise HTTPException(413, f"upload larger than the {max_upload_mb:g} MB limit")
                out.write(chunk)
        if size == 0:
            path.unlink(missing_ok=True)
            raise HTTPException(422, "cannot read the video: the upload is empty")
        return open_video(path, owned=True)

    @app.post("/api/videos/folder")
    def open_from_folder(request: FolderRequest) -> dict[str, Any]:
        """Open a video of the folder given at start, by its name there."""
        if folder is None:
            raise HTTPException(404, "the server was started without a video folder (--videos)")
        try:
            path = confined_path(folder, request.name, "name")
        except ValueError as e:
            raise HTTPException(422, str(e).replace(str(folder), "the video folder")) from None
        if path.suffix.lower() not in suffixes or not path.is_file():
            raise HTTPException(404, f"no video {request.name!r} in the video folder")
        return open_video(path, owned=False)

    @app.get("/api/videos/{video_id}/frames/{index}")
    def frame(video_id: str, index: int) -> Response:
        """Source frame ``index`` as PNG (as decoded for the model, before its crop)."""
        from PIL import Image

        video = store.get(video_id)
        if not video.clip.num_frames:
            raise HTTPException(422, "this input is a feature file: it has no frames")
        _check_frame(video.clip, index, "frame index")
        try:
            with store.reader_lock, store.readers.reading(video.path, resize=video.clip.frame_size) as reader:
                pixels = reader.get_frames([index])[0].numpy()
        except VideoDecodeError as e:
            raise HTTPException(422, f"cannot decode frame {index}: {e.reason}") from None
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        return Response(buffer.getvalue(), media_type="image/png")

    def run(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            with model_lock:
                return fn(*args, **kwargs).to_json()
        except (ValueError, FileNotFoundError) as e:
            raise HTTPException(422, str(e)) from None
        except VideoDecodeError as e:  # a key-frame query decodes the video again, at its frame
            raise HTTPException(422, f"cannot read the video: {e.reason}") from None

    @app.post("/api/videos/{video_id}/query")
    def query(video_id: str, request: QueryRequest) -> dict[str, Any]:
        """Run the model on the whole video (a temporal head: its segments for the timeline).

        A key-frame head (``takes_frame`` in ``/api/info``) runs on the clip its data module
        samples for source frame ``frame``: FHP forecasts both hands (``predictions[v]["hands"]``,
        ``[5 key frames, 2 hands (left, right), (x, y)]``), SCOD boxes the object of change
        (``boxes`` ``[q, 4]`` COCO ``x, y, w, h``, best score first), in pixels of the stored frames
        (``width`` x ``height`` of the open response). ``frame`` in the response is the frame
        used (None: the data module's default, or a model that takes no frame).
        """
        video = store.get(video_id)
        if takes_boxes:
            raise HTTPException(422, "an STA model labels a box: drag one on the frame and query the region")
        texts = [t for t in request.texts if t.strip()] or None
        frame = request.frame if takes_frame else None
        if frame is not None and video.clip.num_frames:
            _check_frame(video.clip, frame)
        if video.queries:
            if texts is None:
                raise HTTPException(422, "an NLQ model answers a question: give it in texts")
            result = run(predictor.predict, video.path, texts, video.path.name)
        elif frame is not None:
            # prepared anew: the data module samples the clip that ends at (or centres on) the frame
            result = run(predictor.predict, video.path, texts, video.path.name, frame=frame)
        else:
            result = run(predictor.predict, video.clip, texts)
        return {**result, "frame": frame}

    @app.post("/api/videos/{video_id}/region")
    def region(video_id: str, request: RegionRequest) -> dict[str, Any]:
        """Grow a region from the points (or take the box) and run the model on its tokens.

        An STA head (``takes_boxes`` in ``/api/info``) labels the box on source frame ``frame``, the
        last one observed: the response is its prediction (``boxes`` in stored-frame pixels, ``nouns``,
        ``verbs``, ``ttcs`` seconds, ``scores``, best first) and the ``frame``.
        """
        video = store.get(video_id)
        clip = video.clip
        if takes_boxes:
            return label_box(video, request)
        if clip.frame_indices is None:
            raise HTTPException(
                422,
                "region queries need a video the model reads whole (a raw-video list); this input is a "
                "feature file or a key-frame head's (query it at a frame instead)",
            )
        if not request.points and request.box is None:
            raise HTTPException(422, "give points or a box")
        _check_frame(clip, request.frame)
        try:
            with model_lock:
                if video.tokens is None:
                    video.tokens = predictor.tokens(clip)
            tokens, grid = video.tokens
            tubelet = clip.frame_indices.shape[1] // grid[0]
            steps = _frame_steps(clip, tubelet)
            method = request.method or ("sam2" if segmenter is not None else "grow")
            if method == "sam2":
                if segmenter is None:
                    raise ValueError("this server has no SAM 2 (start it with --sam2_config)")
                with model_lock:
                    mask = segmenter.region(clip, grid, request.frame, request.points, request.box)
                if not mask.any():
                    raise ValueError("SAM 2 found no object there")
            elif request.box is not None:
                mask = box_region(request.box, clip.crop, grid)
            else:
                seeds = [
                    (steps[request.frame], *to_token(x, y, clip.crop, grid[1:])) for x, y in request.points
                ]
                mask = grow_region(tokens, seeds, request.threshold)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        texts = [t for t in request.texts if t.strip()] or None
        result = run(predictor.predict_region, clip, mask, texts)
        return {
            **result,
            "grid": list(grid),
            "crop": list(clip.crop),
            "frame_steps": steps,
            "mask": mask.int().tolist(),
        }

    def label_box(video: _Video, request: RegionRequest) -> dict[str, Any]:
        if request.box is None:
            raise HTTPException(422, "an STA model labels a box: drag one around the object")
        _check_frame(video.clip, request.frame)
        height, width = video.clip.frame_size
        # a drag may end past the canvas's edge: the part inside the frame is the box
        x0, y0, x1, y1 = (min(max(v, 0.0), 1.0) for v in request.box)
        if not (x0 < x1 and y0 < y1):
            raise HTTPException(
                422, f"box {list(request.box)} has no area inside the frame (x0 < x1, y0 < y1)"
            )
        box = [x0 * width, y0 * height, x1 * width, y1 * height]  # the stored frame's pixels
        detections = [{"box": box, "score": 1.0}]
        result = run(
            predictor.predict, video.path, None, video.path.name, frame=request.frame, detections=detections
        )
        return {**result, "frame": request.frame}

    return app


def _check_frame(clip: Clip, index: int, what: str = "frame") -> None:
    if not 0 <= index < clip.num_frames:
        raise HTTPException(422, f"{what} {index} outside 0..{clip.num_frames - 1}")


def _names(datamodule: Any, attr: str) -> list[str]:
    """A data module's category names, or none where it has none (or cannot read them now)."""
    try:
        return list(getattr(datamodule, attr, None) or [])
    except (ValueError, FileNotFoundError):  # read from the run's annotation files, maybe gone
        return []


def serve_main(args: list[str]) -> None:
    """``vidlit serve --ckpt_path X [--host H --port P] [--videos DIR]``, or ``vidlit serve --demo``."""
    parser = argparse.ArgumentParser(
        prog="vidlit serve",
        description="Serve a checkpoint over HTTP with a pointing page at / (API docs at /docs).",
    )
    parser.add_argument("--ckpt_path", type=Path, help="checkpoint written by `vidlit fit`")
    parser.add_argument("--config", type=Path, help="the run's config.yaml (default: next to the checkpoint)")
    parser.add_argument(
        "--demo", action="store_true", help="train (once) and serve the two-shapes demo model"
    )
    parser.add_argument("--demo_dir", type=Path, default=Path.home() / ".cache" / "vidlit" / "demo")
    parser.add_argument("--videos", type=Path, help="folder of videos the page can open by name")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max_upload_mb", type=float, default=64.0)
    parser.add_argument("--ttl", type=float, default=3600.0, help="seconds an unused upload is kept")
    parser.add_argument("--texts", nargs="*", help="prompts the page starts with")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--sam2_config", help="SAM 2 config in the sam2 package, e.g. configs/sam2.1/sam2.1_hiera_t.yaml"
    )
    parser.add_argument("--sam2_ckpt", type=Path, help="its weights (SAM 2 segments clicked objects)")
    parser.add_argument("--sam2_image_size", type=int, default=1024)
    options = parser.parse_args(args)
    if (options.sam2_config is None) != (options.sam2_ckpt is None):
        parser.error("give --sam2_config and --sam2_ckpt together")
    if options.demo == (options.ckpt_path is not None):
        parser.error("give --ckpt_path or --demo (one of them)")
    texts = options.texts
    try:
        if options.demo:
            from vidlit.serve.demo import DEMO_CAPTIONS, ensure_demo

            options.ckpt_path, video = ensure_demo(options.demo_dir)
            options.videos = options.videos or video.parent
            texts = texts or list(DEMO_CAPTIONS.values())
        if options.videos is not None and not options.videos.is_dir():
            what = (
                "a file; --videos takes the folder of videos to offer"
                if options.videos.exists()
                else "no such folder"
            )
            raise FileNotFoundError(f"{options.videos}: {what} (--videos)")
        predictor = load(options.ckpt_path, options.config, options.device)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    import uvicorn

    segmenter = None
    if options.sam2_config is not None:
        from vidlit.serve.sam2_regions import Sam2Segmenter

        if not options.sam2_ckpt.is_file():
            parser.error(f"{options.sam2_ckpt}: SAM 2 checkpoint not found")
        segmenter = Sam2Segmenter(
            options.sam2_config, options.sam2_ckpt, options.device, options.sam2_image_size
        )
    app = create_app(predictor, options.videos, options.max_upload_mb, options.ttl, texts, segmenter)
    print(f"vidlit serve: http://{options.host}:{options.port}/ (API docs at /docs)")
    uvicorn.run(app, host=options.host, port=options.port, log_level="warning")
