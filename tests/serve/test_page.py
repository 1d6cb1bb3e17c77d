"""The pointing page in a real headless Chromium (Debian's, driven by playwright; no browser download)."""

import os
import shutil
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def page(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            viewport={"width": 1000, "height": 760},
        )
        yield context.new_page()
        context.close()


def _query_at(page, x: float, y: float) -> list[str]:
    """Click at (x, y) (fractions of the frame), press Enter, return the ranked prompts."""
    canvas = page.locator("#view")
    box = canvas.bounding_box()
    version = page.locator("#results").get_attribute("data-version") or "0"
    page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])
    page.keyboard.press("Enter")  # the keyboard path; the button does the same
    page.wait_for_function(
        f"(document.getElementById('results').dataset.version || '0') !== '{version}'", timeout=30_000
    )
    return page.locator("#results li").evaluate_all("items => items.map(i => i.dataset.text)")


def test_click_a_shape_rank_prompts_and_flip(server, page, tmp_path):
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    page.wait_for_function("document.getElementById('view').dataset.frameLoaded === '0'", timeout=30_000)
    assert page.locator("#texts").input_value().splitlines() == ["a red square", "a blue circle"]
    assert page.locator("#folder-videos").input_value() == "two_shapes.mp4"
    assert page.locator("#query-video").inner_text() == "Whole video (W)"  # the model takes no key frame

    # frame 0: the red square is top-left, the blue circle bottom-right
    assert _query_at(page, 0.25, 0.25)[0] == "a red square"
    shot = tmp_path / "vidlit_serve.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("VIDLIT_UPDATE_DOCS"):  # refresh the README's screenshot on request only
        shutil.copy(shot, DOCS / "vidlit_serve.png")

    assert _query_at(page, 0.75, 0.75)[0] == "a blue circle"

    # scrub with the keyboard, then a box around the circle's place at that frame
    page.locator("#view").focus()
    for _ in range(12):
        page.keyboard.press("ArrowRight")
    page.wait_for_function("document.getElementById('view').dataset.frameLoaded === '12'", timeout=30_000)
    assert page.locator("#frame-label").inner_text() == "12"
    canvas = page.locator("#view").bounding_box()
    version = page.locator("#results").get_attribute("data-version")
    page.mouse.move(canvas["x"] + 0.3 * canvas["width"], canvas["y"] + 0.6 * canvas["height"])
    page.mouse.down()
    page.mouse.move(canvas["x"] + 0.7 * canvas["width"], canvas["y"] + 0.95 * canvas["height"], steps=5)
    page.mouse.up()
    page.click("#query-region")
    page.wait_for_function(
        f"(document.getElementById('results').dataset.version || '0') !== '{version}'", timeout=30_000
    )
    ranked = page.locator("#results li").evaluate_all("items => items.map(i => i.dataset.text)")
    assert ranked[0] == "a blue circle"
    assert page.locator("#status").inner_text() == ""


@pytest.fixture
def nlq_server(nlq_run, serve):
    """The session's tiny NLQ checkpoint served with its feature folder."""
    import warnings

    from vidlit.inference import load
    from vidlit.serve.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predictor = load(nlq_run.ckpt)
    app = create_app(predictor, folder=nlq_run.data / "features")
    with serve(app) as url:
        yield url, predictor, nlq_run.data / "features"
    app.state.store.close()


def test_nlq_query_box_puts_windows_on_the_timeline(nlq_server, page, tmp_path):
    """An NLQ model: the page shows a question box; the answer's windows are listed and drawn."""
    url, predictor, folder = nlq_server
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    assert page.locator("#nlq").is_visible()
    first = page.locator("#folder-videos").input_value()
    assert first.endswith(".pt")
    page.wait_for_function(
        "document.getElementById('status').textContent.includes('question')", timeout=30_000
    )
    question = "where is the red ball?"
    page.fill("#nlq-query", question)
    version = page.locator("#results").get_attribute("data-version") or "0"
    page.keyboard.press("Enter")
    page.wait_for_function(
        f"(document.getElementById('results').dataset.version || '0') !== '{version}'", timeout=30_000
    )
    shown = page.locator("#results li").evaluate_all("items => items.map(i => i.dataset.text)")
    want = predictor.predict(folder / first, texts=[question]).predictions[0]
    assert len(shown) == len(want["windows"]) > 0
    assert shown == [f"{s:.1f}-{e:.1f} s" for s, e in want["windows"].tolist()]
    assert page.locator("#timeline").is_visible()
    assert page.locator("#status").inner_text() == ""
    page.screenshot(path=str(tmp_path / "vidlit_serve_nlq.png"))
    # an empty question is refused on the page, without a request
    page.fill("#nlq-query", "")
    page.click("#ask")
    assert page.locator("#status").inner_text() == "type a question first"


def _pixel(page, x: float, y: float) -> list[int]:
    """RGB of the canvas at ``(x, y)`` in its own pixels."""
    return page.evaluate(
        "([x, y]) => Array.from(document.getElementById('view').getContext('2d')"
        ".getImageData(Math.round(x), Math.round(y), 1, 1).data.slice(0, 3))",
        [x, y],
    )


@pytest.mark.parametrize("recipe", ["ego4d_fhp.yaml", "ego4d_scod.yaml"])
def test_key_frame_head_draws_on_the_frame_shown(recipe, fit, serve, page, tmp_path):
    """FHP / SCOD: W queries the frame shown; the forecast hand points or the box are drawn over it."""
    from vidlit.data.synth import synthesize
    from vidlit.serve.app import create_app

    family = recipe.removesuffix(".yaml")
    if family == "ego4d_fhp":
        from vidlit.data.synth.ego4d_fhp import write_ego4d_fhp

        data = write_ego4d_fhp(tmp_path / "data", num_train=8, num_val=8, num_test=1)
    else:
        data = synthesize(family, tmp_path / "data")
    predictor = fit(recipe, data, tmp_path / "runs")
    app = create_app(predictor, folder=data / "clips")
    with serve(app) as url:
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        page.wait_for_function("document.getElementById('view').dataset.frameLoaded === '0'", timeout=30_000)
        assert page.locator("#query-video").inner_text() == "Query this frame (W)"
        page.locator("#view").focus()
        for _ in range(2):
            page.keyboard.press("Shift+ArrowRight")
        page.wait_for_function("document.getElementById('view').dataset.frameLoaded === '20'", timeout=30_000)
        version = page.locator("#results").get_attribute("data-version") or "0"
        page.keyboard.press("w")
        page.wait_for_function(
            f"(document.getElementById('results').dataset.version || '0') !== '{version}'", timeout=30_000
        )
        assert page.locator("#status").inner_text() == ""
        rows = page.locator("#results li").evaluate_all("items => items.map(i => i.dataset.text)")
        path = data / "clips" / page.locator("#folder-videos").input_value()
        expected = predictor.predict(path, frame=20).predictions
        width = page.evaluate("document.getElementById('view').width")
        scale = width / 64  # both sample data sets have 64 x 64 frames
        if family == "ego4d_fhp":
            from vidlit.formats.ego4d_fhp import KEY_FRAMES

            assert page.locator("#view").get_attribute("data-drawn") == "hands:10"
            assert [r.split(":")[0] for r in rows] == list(KEY_FRAMES)
            # the point drawn last (contact frame, right hand: the views' mean) is on top
            x, y = torch.stack([p["hands"] for p in expected]).mean(0)[-1, 1].tolist()
            assert _pixel(page, x * scale, y * scale) == [0, 255, 255]
        else:
            assert page.locator("#view").get_attribute("data-drawn") == "box:1"
            assert rows and rows[0].startswith("box ")
            x, y, _, h = expected[0]["boxes"][0].tolist()
            # the box's left edge, halfway down
            assert _pixel(page, x * scale, (y + h / 2) * scale) == [255, 136, 0]
        page.screenshot(path=str(tmp_path / f"vidlit_serve_{family}.png"))
        # scrubbed away, the answer is not drawn over another frame
        page.keyboard.press("ArrowRight")
        page.wait_for_function("document.getElementById('view').dataset.frameLoaded === '21'", timeout=30_000)
        assert page.locator("#view").get_attribute("data-drawn") == ""
    app.state.store.close()


def test_sta_labels_the_box_dragged_on_the_frame_shown(fit, serve, page, tmp_path):
    """STA: drag a box around the object on the frame shown, Enter: its noun / verb / contact time."""
    from vidlit.data.ego4d_sta import read_sta_annotations
    from vidlit.data.synth.ego4d_sta import write_ego4d_sta
    from vidlit.serve.app import create_app

    data = write_ego4d_sta(tmp_path / "data", num_train=8, num_val=4, num_test=2)
    predictor = fit("ego4d_sta.yaml", data, tmp_path / "runs")
    first = sorted(p.name for p in (data / "videos").iterdir())[0]
    items = read_sta_annotations(data / "fho_sta_train.json").frames
    item = next(i for i in items if f"{i.video_uid}.mp4" == first)
    app = create_app(predictor, folder=data / "videos")
    with serve(app) as url:
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']", timeout=30_000)
        page.wait_for_function("document.getElementById('view').dataset.frameLoaded === '0'", timeout=30_000)
        page.locator("#view").focus()
        for _ in range(item.frame // 10):
            page.keyboard.press("Shift+ArrowRight")
        for _ in range(item.frame % 10):
            page.keyboard.press("ArrowRight")
        loaded = f"document.getElementById('view').dataset.frameLoaded === '{item.frame}'"
        page.wait_for_function(loaded, timeout=30_000)
        height, width = page.evaluate("[state.video.height, state.video.width]")
        x0, y0, x1, y1 = item.boxes[0].tolist()
        canvas = page.locator("#view").bounding_box()
        page.mouse.move(
            canvas["x"] + x0 / width * canvas["width"], canvas["y"] + y0 / height * canvas["height"]
        )
        page.mouse.down()
        page.mouse.move(
            canvas["x"] + x1 / width * canvas["width"], canvas["y"] + y1 / height * canvas["height"], steps=5
        )
        page.mouse.up()
        version = page.locator("#results").get_attribute("data-version") or "0"
        page.keyboard.press("Enter")
        page.wait_for_function(
            f"(document.getElementById('results').dataset.version || '0') !== '{version}'", timeout=30_000
        )
        assert page.locator("#status").inner_text() == ""
        drawn = page.evaluate("state.box").copy()
        box = [drawn[0] * width, drawn[1] * height, drawn[2] * width, drawn[3] * height]
        (want,) = predictor.predict(
            data / "videos" / first, frame=item.frame, detections=[{"box": box, "score": 1.0}]
        ).predictions
        nouns, verbs = predictor.datamodule.noun_names, predictor.datamodule.verb_names
        noun, verb, ttc = int(want["nouns"][0]), int(want["verbs"][0]), float(want["ttcs"][0])
        rows = page.locator("#results li").evaluate_all("items => items.map(i => i.dataset.text)")
        assert len(rows) == min(5, len(want["nouns"]))
        assert rows[0] == f"{nouns[noun]} / {verbs[verb]}, contact in {ttc:.2f} s"
        assert page.locator("#view").get_attribute("data-drawn") == "box:1"
        scale = page.evaluate("document.getElementById('view').width") / width
        # the labelled box's left edge, halfway down, over the user's (green) box
        assert _pixel(page, box[0] * scale, (box[1] + box[3]) / 2 * scale) == [255, 136, 0]
        page.screenshot(path=str(tmp_path / "vidlit_serve_ego4d_sta.png"))
    app.state.store.close()
