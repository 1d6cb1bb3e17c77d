"""The demo model, trained once per session (``vidlit serve --demo``'s own run), and its server."""

import contextlib
import socket
import threading
import time
import warnings
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """``(checkpoint, two_shapes.mp4)`` of the demo run (about a minute on 2 CPU cores, once)."""
    from vidlit.serve.demo import ensure_demo

    return ensure_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="session")
def predictor(demo):
    from vidlit.inference import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(demo[0])


@pytest.fixture
def app(predictor, demo):
    from vidlit.serve.app import create_app

    app = create_app(
        predictor,
        folder=demo[1].parent,
        max_upload_mb=0.5,
        ttl=600,
        default_texts=["a red square", "a blue circle"],
    )
    yield app
    app.state.store.close()


@contextlib.contextmanager
def _uvicorn(app):
    """Run ``app`` on a real uvicorn at 127.0.0.1:<free port>, in a thread; yields the base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def serve():
    """``with serve(app) as url:`` runs another app on a real uvicorn, as :func:`server` does the demo's."""
    return _uvicorn


@pytest.fixture
def server(app):
    """The app on a real uvicorn at 127.0.0.1:<free port>; yields the base URL."""
    with _uvicorn(app) as url:
        yield url


@pytest.fixture
def fit(fit_one_step):
    """``fit(recipe, data, runs)``: a :class:`~vidlit.inference.Predictor` of the recipe after one step
    (its sample data is written to ``data`` if missing)."""
    from vidlit.inference import load

    def run(recipe: str, data: Path, runs: Path):
        ckpt = fit_one_step("--config", str(RECIPES / recipe), root=data, runs=runs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load(ckpt)

    return run
