"""The web app (``ntre-zoo app``) in a real browser: Debian's headless Chromium driven by Playwright.

The test serves the app on a free loopback port, uploads a support, paints on it with the brush (the server
reads the strokes as its mask), uploads its mask (which replaces the strokes) and a query, presses Segment, waits
for the result image, downloads the mask and checks that it equals ``model.predict`` on the same files; then
runs an example episode from the gallery. A second test gives two supports two class names and checks the
downloaded label map against ``model.segment``; a third segments a video query and finds its overlay playing and
its mask video and zip offered.
Every request that would leave the machine is blocked and recorded: the page must make none.

Set ``NTRE_ZOO_APP_SCREENSHOT=docs/app.png`` to save the page after the prediction (the README's picture).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

import ntre_zoo
from ntre_zoo.data import synthetic_episode
from ntre_zoo.demo import DEMO_MODEL

CHROMIUM = Path("/usr/bin/chromium")
#: Flags that keep Chromium from reaching any service of its own (updates, sync, QUIC probes, first-run pages).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.is_file(), reason=f"Debian's chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
)
pytest.importorskip("gradio", reason="the app extra is not installed: pip install -e '.[test]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def episode(tmp_path_factory) -> dict[str, Path]:
    """A synthetic episode as the PNG files a user would upload."""
    folder = tmp_path_factory.mktemp("episode")
    supports, masks, query, _ = synthetic_episode(11, fold=0, shot=1, novel=True)
    files = {"support": folder / "support.png", "mask": folder / "support_mask.png", "query": folder / "query.png"}
    Image.fromarray(supports[0]).save(files["support"])
    Image.fromarray(masks[0] * np.uint8(255)).save(files["mask"])
    Image.fromarray(query[:, :170]).save(files["query"])  # not square: the way back to the original size matters
    return files


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    from ntre_zoo.app import build_app

    folder = tmp_path_factory.mktemp("app")
    app = build_app(DEMO_MODEL, examples_dir=folder / "examples", output_dir=folder / "masks")
    port = _free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture
def page(tmp_path) -> Iterator[tuple[object, list[str]]]:
    """A fresh Chromium profile's page, and the list of the requests it tried to send off the machine."""
    blocked: list[str] = []

    def leaves_the_machine(url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme not in ("data", "blob") and parts.hostname not in ("127.0.0.1", "localhost")

    def block(route) -> None:
        blocked.append(route.request.url)
        route.abort()

    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            context.route(leaves_the_machine, block)  # loopback requests are not intercepted at all
            yield context.pages[0] if context.pages else context.new_page(), blocked
        finally:
            context.close()


def _paint_a_stroke(browser_page, editor: str) -> None:
    """Choose the editor's brush and drag it across the middle of its canvas."""
    browser_page.locator(f"{editor} button[aria-label=Brush]").click()
    box = browser_page.locator(f"{editor} canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    browser_page.mouse.move(x - 30, y)
    browser_page.mouse.down()
    browser_page.mouse.move(x + 30, y + 20)
    browser_page.mouse.up()


def test_a_prediction_made_in_the_page_equals_model_predict(server, page, episode, tmp_path):
    browser_page, blocked = page
    browser_page.goto(server)
    browser_page.wait_for_selector("#run", timeout=TIMEOUT_MS)
    assert "Synthetic demo model" in browser_page.locator("#model-notice").inner_text()

    # The note under a support says what the server got: the image's size and the mask's object pixels.
    note = browser_page.locator("#support-note-0")
    browser_page.locator("#support-0 input[type=file]").set_input_files(str(episode["support"]))
    note.get_by_text("Support 1 has no target pixel").wait_for(timeout=TIMEOUT_MS)
    # Brush strokes over the image make the mask. The editor gets the image from the server and draws it in the
    # background; a stroke made before that is wiped when the image arrives, so paint until the server sees one.
    painted = note.get_by_text(re.compile(r"Support 1: 200 x 200 px, [1-9]\d* object pixels \(painted\)"))
    for _ in range(TIMEOUT_MS // 3000):
        _paint_a_stroke(browser_page, "#support-paint-0")
        with contextlib.suppress(sync_api.TimeoutError):
            painted.wait_for(timeout=3000)
            break
    assert painted.is_visible(), note.inner_text()
    # An uploaded mask replaces the strokes; the prediction below uses it.
    browser_page.locator("#support-mask-0 input[type=file]").set_input_files(str(episode["mask"]))
    target = int((np.asarray(Image.open(episode["mask"])) > 0).sum())
    note.get_by_text(f"Support 1: 200 x 200 px, {target} object pixels (uploaded mask)").wait_for(timeout=TIMEOUT_MS)
    browser_page.locator("#queries input[type=file]").set_input_files(str(episode["query"]))
    browser_page.locator('#queries [aria-label="query.png"]').wait_for(timeout=TIMEOUT_MS)
    browser_page.click("#run")

    browser_page.locator("#results img").first.wait_for(state="visible", timeout=TIMEOUT_MS)
    browser_page.locator('#masks [aria-label="query_mask.png"]').wait_for(timeout=TIMEOUT_MS)
    link = browser_page.locator("#masks a[download]").first
    assert browser_page.locator("#results img").count() == 4  # overlay, probability, BG map, DO map
    assert "1 query segmented from 1 support(s)" in browser_page.locator("#status").inner_text()
    with browser_page.expect_download(timeout=TIMEOUT_MS) as download:
        link.click()
    downloaded = tmp_path / download.value.suggested_filename
    download.value.save_as(downloaded)

    model = ntre_zoo.from_pretrained(DEMO_MODEL)
    expected = model.predict(episode["support"], episode["mask"], episode["query"])
    got = np.asarray(Image.open(downloaded))
    assert got.shape == expected.shape == (200, 170)
    assert set(np.unique(got)) <= {0, 255}
    assert 0 < expected.sum() < expected.size
    assert np.array_equal(got // 255, expected)
    assert blocked == []

    screenshot = os.environ.get("NTRE_ZOO_APP_SCREENSHOT")
    if screenshot:
        browser_page.screenshot(path=screenshot, full_page=True)

    # The example gallery works out of the box: a synthetic episode fills the inputs and segments.
    browser_page.get_by_text("episode2_query.png").click()
    browser_page.locator('#queries [aria-label="episode2_query.png"]').wait_for(timeout=TIMEOUT_MS)
    browser_page.click("#run")
    browser_page.locator('#masks [aria-label="episode2_query_mask.png"]').wait_for(timeout=TIMEOUT_MS)
    assert "1 query segmented from 1 support(s)" in browser_page.locator("#status").inner_text()


def _upload_support(browser_page, index: int, image: Path, mask: Path, class_name: str) -> None:
    """Fill support ``index`` (its tab, image, uploaded mask and class name) and wait until the server has it."""
    browser_page.get_by_role("tab", name=f"Support {index + 1}", exact=True).click()
    browser_page.locator(f"#support-{index} input[type=file]").set_input_files(str(image))
    browser_page.locator(f"#support-mask-{index} input[type=file]").set_input_files(str(mask))
    field = browser_page.locator(f"#support-class-{index} textarea, #support-class-{index} input").first
    field.fill(class_name)
    field.press("Tab")  # commit the text box's value to the server
    target = int((np.asarray(Image.open(mask)) > 0).sum())
    note = browser_page.locator(f"#support-note-{index}")
    note.get_by_text(re.compile(rf"Support {index + 1}: .*{target} object pixels \(uploaded mask\)")).wait_for(
        timeout=TIMEOUT_MS
    )


def test_two_classes_in_the_page_give_the_label_map_of_segment(server, page, episode, tmp_path):
    browser_page, blocked = page
    other_images, other_masks, _, _ = synthetic_episode(6, fold=0, shot=1, novel=True)
    other = {"support": tmp_path / "other.png", "mask": tmp_path / "other_mask.png"}
    Image.fromarray(other_images[0]).save(other["support"])
    Image.fromarray(other_masks[0] * np.uint8(255)).save(other["mask"])

    browser_page.goto(server)
    browser_page.wait_for_selector("#run", timeout=TIMEOUT_MS)
    _upload_support(browser_page, 0, episode["support"], episode["mask"], "circle")
    _upload_support(browser_page, 1, other["support"], other["mask"], "stripes")
    browser_page.locator("#queries input[type=file]").set_input_files(str(episode["query"]))
    browser_page.locator('#queries [aria-label="query.png"]').wait_for(timeout=TIMEOUT_MS)
    browser_page.click("#run")

    browser_page.locator('#masks [aria-label="query_labels.png"]').wait_for(timeout=TIMEOUT_MS)
    assert "1 query segmented from 2 support(s)" in browser_page.locator("#status").inner_text()
    with browser_page.expect_download(timeout=TIMEOUT_MS) as download:
        browser_page.locator("#masks a[download]").first.click()
    downloaded = tmp_path / download.value.suggested_filename
    download.value.save_as(downloaded)

    model = ntre_zoo.from_pretrained(DEMO_MODEL)
    expected = model.segment(
        episode["query"],
        {"circle": ([episode["support"]], [episode["mask"]]), "stripes": ([other["support"]], [other["mask"]])},
    )
    assert set(np.unique(expected.label_map)) == {0, 1, 2}  # both classes are found in this query
    picture = Image.open(downloaded)
    assert picture.mode == "P" and picture.size == (170, 200)
    assert np.array_equal(np.asarray(picture), expected.label_map)
    assert blocked == []


def test_a_video_query_plays_its_overlay_and_offers_its_masks(server, page, episode, tmp_path):
    from data_fixtures import encode_clip, make_clip

    browser_page, blocked = page
    frames, labels = make_clip(12)
    Image.fromarray(frames[0]).save(tmp_path / "first.png")
    Image.fromarray((labels[0] == 1).astype(np.uint8) * 255).save(tmp_path / "first_mask.png")
    clip = encode_clip(tmp_path / "clip.mkv", frames)

    browser_page.goto(server)
    browser_page.wait_for_selector("#run", timeout=TIMEOUT_MS)
    _upload_support(browser_page, 0, tmp_path / "first.png", tmp_path / "first_mask.png", "disc")
    browser_page.locator("#queries input[type=file]").set_input_files(str(clip))
    browser_page.locator('#queries [aria-label="clip.mkv"]').wait_for(timeout=TIMEOUT_MS)
    browser_page.click("#run")

    for name in ("clip_mask.mkv", "clip_frames.zip"):
        browser_page.locator(f'#masks [aria-label="{name}"]').wait_for(timeout=TIMEOUT_MS)
    video = browser_page.locator("#video-result video")
    video.wait_for(state="attached", timeout=TIMEOUT_MS)
    assert video.get_attribute("src", timeout=TIMEOUT_MS).split("?")[0].endswith("clip_overlay.mp4")
    assert "1 query (12 video frames) segmented from 1 support(s)" in browser_page.locator("#status").inner_text()
    assert blocked == []
