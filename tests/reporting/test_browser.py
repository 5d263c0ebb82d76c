"""The HTML pages open in headless Chromium (through Playwright): every image decodes, no console
errors, a screenshot. The capstone report, the audit gallery and nbconvert exports of rendered
notebooks; pages with a missing image, a console error, an undecodable figure or a remote
resource must fail.

Skipped (with the reason) only when Chromium or Playwright is absent and ``CI`` is unset; in CI a
missing browser fails the suite.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re

import numpy as np
import pytest
from PIL import Image

from kairos_curate.audit import audit
from kairos_curate.data.sources import ArrayImageSource
from kairos_curate.reporting.browser import check_page, check_pages, find_chromium
from kairos_curate.stages import report as report_stage

from ..fake_datasets import make_report_project

WIDTH, HEIGHT = 1280, 900


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    message = ""
    if binary is None:
        message = "Chromium not installed (apt-get install -y chromium, or set $CHROMIUM)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            message = "Playwright not installed (pip install playwright; no browser download is needed)"
    if message:
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run the browser checks")
        pytest.skip(message)
    return binary


def _assert_screenshot(png: bytes) -> None:
    image = Image.open(io.BytesIO(png))
    assert image.size == (WIDTH, HEIGHT)
    pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5, "screenshot is blank"


def test_capstone_report_renders_in_chromium(tmp_path, chromium):
    root = make_report_project(tmp_path)
    params = report_stage.load(
        {"report": {"title": "Capstone", "audit": False, "screenshot": False}, "value": {"primary": "per_class"}}
    )
    html_path = report_stage.run(params, root)
    check = check_page(html_path, tmp_path / "capstone.png", width=WIDTH, height=HEIGHT, chromium=chromium)
    assert len(check.images) >= 5  # four stage figures + the compute-vs-accuracy figure
    assert not check.broken_images, check.broken_images
    assert not check.console_errors, check.console_errors
    assert check.title == "Capstone"
    assert "Key results" in check.first_screen_text
    assert (tmp_path / "capstone.png").read_bytes() == check.screenshot
    _assert_screenshot(check.screenshot)


def test_audit_gallery_renders_in_chromium(tmp_path, chromium):
    rng = np.random.default_rng(0)
    pool, ref = rng.normal(size=(40, 6)), rng.normal(size=(12, 6)) + 0.3
    pool[1] = pool[0]
    ids = np.array([f"p{i}" for i in range(40)])
    pixels = rng.integers(0, 255, (40, 14, 14), dtype=np.uint8)
    pixels[5] = 0  # a black image: flagged corrupted (dark / low information)
    images = ArrayImageSource(ids, pixels)
    ref_images = ArrayImageSource([f"r{i}" for i in range(12)], rng.integers(0, 255, (12, 14, 14), dtype=np.uint8))
    labels, ref_labels = np.arange(40) % 2, np.arange(12) % 2
    res = audit(
        pool,
        ref,
        images,
        ids,
        labels=labels,
        reference_labels=ref_labels,
        reference_images=ref_images,
        class_names=["Ant", "Bee"],
        out_dir=tmp_path / "audit",
        n_lowest=8,
        n_highest=4,
        alpha=0.1,
    )
    check = check_page(res.html_path, width=WIDTH, height=HEIGHT, chromium=chromium)
    shown = len(re.findall(r"src='data:image/png;base64,", res.html_path.read_text()))
    assert len(check.images) == shown >= 8 + 4 + 1
    assert all(img["naturalWidth"] > 0 and img["decoded"] for img in check.images)
    assert not check.console_errors, check.console_errors
    assert not check.remote_requests
    # the first screen opens with the summary per issue type
    for heading in ("Corrupted", "Off-task", "Likely mislabelled", "Near-duplicate"):
        assert heading in check.first_screen_text
    assert "Ant" in res.html_path.read_text() and "label 0" not in check.first_screen_text
    _assert_screenshot(check.screenshot)


def _notebook_html(tmp_path, png: bytes) -> str:
    """An nbconvert HTML export (the default lab template) of a rendered notebook with one figure."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    nb = new_notebook(
        cells=[
            new_markdown_cell("# Stage notebook\n\nSome text and $x^2$."),
            new_code_cell(
                "plot()",
                execution_count=1,
                outputs=[
                    new_output(
                        "display_data", data={"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"}
                    )
                ],
            ),
        ]
    )
    body, _ = HTMLExporter().from_notebook_node(nbformat.from_dict(nb))
    path = tmp_path / "nb.html"
    path.write_text(body)
    return str(path)


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_notebook_html_export_passes_offline(tmp_path, chromium):
    page = _notebook_html(tmp_path, _png_bytes())
    check = check_page(page, chromium=chromium, width=WIDTH, height=HEIGHT)
    assert check.ok, (check.console_errors, check.broken_images)
    assert [img["naturalWidth"] for img in check.images] == [40]
    # nbconvert's template links require.js and MathJax from a CDN: blocked, listed, tolerated
    assert any("require" in url for url in check.remote_requests)
    assert "Stage notebook" in check.first_screen_text
    strict = check_page(page, chromium=chromium, allow_remote=())
    assert not strict.ok and any("remote request blocked" in e for e in strict.console_errors)


def test_notebook_with_a_corrupt_figure_fails(tmp_path, chromium):
    page = _notebook_html(tmp_path, _png_bytes()[:8] + b"garbage" * 8)  # a PNG signature, then garbage
    check = check_page(page, chromium=chromium)
    assert not check.ok
    assert len(check.broken_images) == 1


def test_page_that_needs_the_network_fails(tmp_path, chromium):
    page = tmp_path / "remote.html"
    page.write_text("<!doctype html><title>r</title><img alt='cdn' src='https://example.com/x.png'>")
    check = check_page(page, chromium=chromium, timeout=20)
    assert not check.ok
    assert check.remote_requests == ["https://example.com/x.png"]
    assert [img["alt"] for img in check.broken_images] == ["cdn"]


def test_check_runs_inside_a_running_event_loop(tmp_path, chromium):
    """Papermill runs the report notebook in a Jupyter kernel, whose asyncio loop is running."""
    page = tmp_path / "ok.html"
    page.write_text("<!doctype html><title>ok</title><p>fine</p>")

    async def inside() -> bool:
        return check_page(page, chromium=chromium).ok

    assert asyncio.run(inside())


def test_check_pages_shares_one_browser_and_writes_screenshots(tmp_path, chromium):
    good, bad = tmp_path / "good.html", tmp_path / "bad.html"
    good.write_text("<!doctype html><title>g</title><p>good</p>")
    bad.write_text("<!doctype html><title>b</title><script>throw new Error('kaput')</script>")
    checks = check_pages([(good, tmp_path / "g.png"), bad], chromium=chromium)
    assert [c.ok for c in checks] == [True, False]
    assert any("kaput" in e for e in checks[1].console_errors)
    assert (tmp_path / "g.png").read_bytes() == checks[0].screenshot


def test_browser_module_speaks_no_websocket_itself():
    import inspect

    from kairos_curate.reporting import browser

    source = inspect.getsource(browser)
    assert "import socket" not in source and "Sec-WebSocket" not in source


def test_the_check_catches_broken_images_and_console_errors(tmp_path, chromium):
    page = tmp_path / "bad.html"
    page.write_text(
        "<!doctype html><html><head><title>bad</title></head><body><p>x</p>"
        "<img alt='gone' src='missing.png'><script>console.error('boom')</script></body></html>"
    )
    check = check_page(page, chromium=chromium)
    assert not check.ok
    assert [img["alt"] for img in check.broken_images] == ["gone"]
    assert any("boom" in e for e in check.console_errors)
    assert any("missing.png" in e for e in check.console_errors)


def test_missing_page_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.html"):
        check_page(tmp_path / "nope.html")
