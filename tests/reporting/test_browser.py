"""Both HTML pages open in headless Chromium: every image decodes, no console errors, a screenshot.

Skipped (with the reason) only when Chromium is absent and ``CI`` is unset; in CI a missing
browser fails the suite.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from kairos_curate.audit import audit
from kairos_curate.data.sources import ArrayImageSource
from kairos_curate.reporting.browser import check_page, find_chromium
from kairos_curate.stages import report as report_stage

from ..fake_datasets import make_report_project

WIDTH, HEIGHT = 1280, 900


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        message = "Chromium not installed (apt-get install -y chromium, or set $CHROMIUM)"
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
    params = report_stage.load({"report": {"title": "Capstone", "audit": False, "screenshot": False},
                                "value": {"primary": "per_class"}})
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
    pool, ref = rng.normal(size=(40, 6)), rng.normal(size=(10, 6)) + 0.3
    pool[1] = pool[0]
    ids = np.array([f"p{i}" for i in range(40)])
    images = ArrayImageSource(ids, rng.integers(0, 255, (40, 14, 14), dtype=np.uint8))
    res = audit(pool, ref, images, ids, out_dir=tmp_path / "audit", n_lowest=8, n_highest=4)
    check = check_page(res.html_path, width=WIDTH, height=HEIGHT, chromium=chromium)
    assert len(check.images) == 8 + 4 + 2
    assert all(img["naturalWidth"] > 0 for img in check.images)
    assert not check.console_errors, check.console_errors
    assert "Lowest-valued 8 samples" in check.first_screen_text
    _assert_screenshot(check.screenshot)


def test_the_check_catches_broken_images_and_console_errors(tmp_path, chromium):
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><html><head><title>bad</title></head><body><p>x</p>"
                    "<img alt='gone' src='missing.png'><script>console.error('boom')</script></body></html>")
    check = check_page(page, chromium=chromium)
    assert not check.ok
    assert [img["alt"] for img in check.broken_images] == ["gone"]
    assert any("boom" in e for e in check.console_errors)
    assert any("missing.png" in e for e in check.console_errors)


def test_missing_page_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.html"):
        check_page(tmp_path / "nope.html")
