"""Open HTML files in headless Chromium, check they rendered, and take screenshots.

Driven by Playwright (PyPI ``playwright``), pointed at an installed Chromium through
``executable_path``: Debian's ``chromium`` (``/usr/bin/chromium``) or ``$CHROMIUM``. No
browser is downloaded (``playwright install`` is never needed).

What is checked (:class:`PageCheck`):

* every ``<img>`` finished loading and decoded (``naturalWidth > 0`` and ``img.decode()``
  resolves); lazily loaded images are switched to eager first, so nothing below the fold is
  skipped;
* no console message of level ``error``, no uncaught exception, no failed request for a local
  (``file:``/``data:``) resource;
* the page never reaches the network: every other request is blocked and listed in
  :attr:`PageCheck.remote_requests`. Blocked requests for the scripts that nbconvert's HTML
  template links from a CDN (require.js, MathJax: :data:`NBCONVERT_CDN`) are tolerated - a
  rendered notebook's text, tables and base64 PNG figures do not need them, only widgets and
  LaTeX rendering do; any other blocked request fails the check (the page is not
  self-contained).

Command line (used to refresh the screenshots under ``reports/screenshots/``)::

    python -m kairos_curate.reporting.browser reports/capstone.html reports/screenshots/capstone.png
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kairos_curate.io import atomic_write

__all__ = [
    "CHROMIUM_FLAGS",
    "NBCONVERT_CDN",
    "BrowserError",
    "PageCheck",
    "check_page",
    "check_pages",
    "find_chromium",
    "main",
]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
)

#: URL prefixes of the scripts nbconvert's HTML templates load from a CDN; blocking them is
#: tolerated (listed in ``remote_requests``, not an error).
NBCONVERT_CDN = (
    "https://cdnjs.cloudflare.com/ajax/libs/require.js/",
    "https://cdnjs.cloudflare.com/ajax/libs/mathjax/",
    "https://cdn.jsdelivr.net/npm/mathjax@",
    "https://unpkg.com/@jupyter-widgets/",
    "https://cdn.jsdelivr.net/npm/@jupyter-widgets/",
)

_LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")

_IMAGE_PROBE = """
async () => {
  const imgs = Array.from(document.images);
  for (const i of imgs) { if (i.loading === 'lazy') i.loading = 'eager'; }
  const decoded = await Promise.all(imgs.map(i => i.decode().then(() => true, () => false)));
  return {
    title: document.title,
    height: document.documentElement.scrollHeight,
    text: (document.body ? document.body.innerText : '').slice(0, 2000),
    images: imgs.map((i, k) => ({src: (i.currentSrc || i.src).slice(0, 80), alt: i.alt,
                                 naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight,
                                 decoded: decoded[k]}))
  };
}
"""


class BrowserError(RuntimeError):
    """Chromium could not be started or did not answer."""


@dataclass
class PageCheck:
    """What headless Chromium saw when it opened a page.

    Attributes
    ----------
    url : str
        The ``file://`` URL opened.
    title : str
        ``document.title``.
    images : list of dict
        One entry per ``<img>``: ``src`` (first 80 characters), ``alt``, ``naturalWidth``,
        ``naturalHeight``, ``decoded``.
    console_errors : list of str
        Console errors, uncaught exceptions, failed local loads and blocked remote requests
        that are not tolerated, in order of arrival.
    remote_requests : list of str
        Every request outside ``file:``/``data:`` that was blocked (tolerated or not).
    screenshot : bytes
        PNG of the first screen (viewport) or the whole page, empty if none was taken.
    first_screen_text : str
        The beginning of ``document.body.innerText`` (what a reader sees first).
    page_height : int
        Height of the whole document in CSS pixels.
    """

    url: str
    title: str = ""
    images: list[dict[str, Any]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    remote_requests: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    first_screen_text: str = ""
    page_height: int = 0

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        """Images that did not load or decode (``naturalWidth`` 0 or ``decode()`` rejected)."""
        return [img for img in self.images if not img.get("naturalWidth") or not img.get("decoded", True)]

    @property
    def ok(self) -> bool:
        """True when every image decoded and no console error was seen."""
        return not self.broken_images and not self.console_errors


def find_chromium() -> str | None:
    """Path of a Chromium binary: ``$CHROMIUM``, else ``chromium``/``chromium-browser`` on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _open_page(
    browser: Any, url: str, width: int, height: int, timeout: float, full_page: bool, allow_remote: Sequence[str]
) -> tuple[dict[str, Any], bytes, list[str], list[str]]:
    errors: list[str] = []
    remote: list[str] = []
    blocked_ok: set[str] = set()
    context = browser.new_context(
        viewport={"width": width, "height": height}, device_scale_factor=1, service_workers="block"
    )
    try:
        page = context.new_page()
        page.set_default_timeout(timeout * 1000)

        def route(r: Any) -> None:
            request_url = r.request.url
            if request_url.startswith(_LOCAL_SCHEMES):
                r.continue_()
                return
            remote.append(request_url)
            if request_url.startswith(tuple(allow_remote)):
                blocked_ok.add(request_url)
            else:
                errors.append(f"remote request blocked (the page must be self-contained): {request_url}")
            r.abort("blockedbyclient")

        def on_console(msg: Any) -> None:
            if msg.type not in ("error", "assert"):
                return
            where = (msg.location or {}).get("url", "")
            if where in blocked_ok or (where and where in remote and "ERR_BLOCKED_BY_CLIENT" in msg.text):
                return  # the failure of a request we blocked ourselves, already judged above
            errors.append(f"console.{msg.type}: {msg.text} {where}".strip())

        def on_failed(request: Any) -> None:
            if request.url.startswith(_LOCAL_SCHEMES):
                errors.append(f"failed load: {request.url} ({request.failure})")

        page.route("**/*", route)
        page.on("console", on_console)
        page.on("pageerror", lambda exc: errors.append(f"uncaught exception: {exc}"))
        page.on("requestfailed", on_failed)
        page.goto(url, wait_until="load")
        info: dict[str, Any] = page.evaluate(_IMAGE_PROBE)
        png: bytes = page.screenshot(full_page=full_page, type="png")
        page.evaluate("1")  # let late console messages arrive before the page closes
    finally:
        context.close()
    return info, png, errors, remote


def _run(
    jobs: list[tuple[Path, Path | None]],
    binary: str,
    width: int,
    height: int,
    timeout: float,
    full_page: bool,
    allow_remote: Sequence[str],
) -> list[PageCheck]:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    checks = []
    with tempfile.TemporaryDirectory(prefix="kairos-chromium-", ignore_cleanup_errors=True) as profile:
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=binary,
                    headless=True,
                    args=list(CHROMIUM_FLAGS),
                    timeout=timeout * 1000,
                    env={**os.environ, "HOME": profile},
                )
                try:
                    for page_path, _ in jobs:
                        url = page_path.as_uri()
                        info, png, errors, remote = _open_page(
                            browser, url, width, height, timeout, full_page, allow_remote
                        )
                        checks.append(
                            PageCheck(
                                url=url,
                                title=str(info["title"]),
                                images=list(info["images"]),
                                console_errors=errors,
                                remote_requests=remote,
                                screenshot=png,
                                first_screen_text=str(info["text"]),
                                page_height=int(info["height"]),
                            )
                        )
                finally:
                    browser.close()
        except PlaywrightError as err:
            raise BrowserError(f"Chromium ({binary}) failed: {str(err).strip().splitlines()[0]}") from err
    return checks


def check_pages(
    pages: Sequence[str | os.PathLike[str] | tuple[str | os.PathLike[str], str | os.PathLike[str] | None]],
    *,
    width: int = 1280,
    height: int = 900,
    chromium: str | None = None,
    timeout: float = 60.0,
    full_page: bool = False,
    allow_remote: Sequence[str] = NBCONVERT_CDN,
) -> list[PageCheck]:
    """:func:`check_page` for several pages in one browser session (one start-up for all).

    ``pages`` holds HTML paths, or ``(html_path, screenshot_path_or_None)`` pairs.
    """
    jobs: list[tuple[Path, Path | None]] = []
    for item in pages:
        html_path, shot = item if isinstance(item, tuple) else (item, None)
        page = Path(html_path).resolve()
        if not page.exists():
            raise FileNotFoundError(f"HTML file {page} not found")
        jobs.append((page, Path(shot) if shot is not None else None))
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError(
            "no Chromium found: install Debian's `chromium` (apt-get install -y chromium) "
            "or set $CHROMIUM to a Chromium/Chrome binary"
        )
    if not jobs:
        return []
    # Playwright's sync API refuses to run where an asyncio loop is running (a Jupyter kernel, as
    # when papermill runs the report notebook): a worker thread has no loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        checks = pool.submit(_run, jobs, binary, width, height, timeout, full_page, allow_remote).result()
    for (_, shot), check in zip(jobs, checks, strict=True):
        if shot is not None:
            with atomic_write(shot, "wb") as handle:
                handle.write(check.screenshot)
    return checks


def check_page(
    html_path: str | os.PathLike[str],
    screenshot: str | os.PathLike[str] | None = None,
    *,
    width: int = 1280,
    height: int = 900,
    chromium: str | None = None,
    timeout: float = 60.0,
    full_page: bool = False,
    allow_remote: Sequence[str] = NBCONVERT_CDN,
) -> PageCheck:
    """Open ``html_path`` in headless Chromium and report images, console errors and a screenshot.

    Parameters
    ----------
    html_path
        The HTML file to open (as a ``file://`` URL): a report, the audit gallery, or an
        nbconvert HTML export of a rendered notebook.
    screenshot
        Where to write the PNG screenshot (atomically); ``None`` keeps it in memory only.
    width, height
        Viewport size in CSS pixels; the screenshot shows this first screen.
    chromium
        Browser binary; default :func:`find_chromium`.
    timeout
        Seconds to wait for the browser to start and for the page to load.
    full_page
        Capture the whole page instead of the first screen.
    allow_remote
        URL prefixes whose (always blocked) requests are tolerated; default :data:`NBCONVERT_CDN`.
        Pass ``()`` to fail on any remote request.

    Returns
    -------
    PageCheck
        Use ``.ok``, ``.broken_images`` and ``.console_errors`` in assertions.

    Raises
    ------
    FileNotFoundError
        ``html_path`` does not exist, or no Chromium binary is found.
    BrowserError
        Chromium did not start or answer in time.
    """
    return check_pages(
        [(html_path, screenshot)],
        width=width,
        height=height,
        chromium=chromium,
        timeout=timeout,
        full_page=full_page,
        allow_remote=allow_remote,
    )[0]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kairos_curate.reporting.browser PAGE.html [SHOT.png]``: check and screenshot."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or len(args) > 2:
        print(main.__doc__)
        return 0 if args and args[0] in ("-h", "--help") else 2
    check = check_page(args[0], args[1] if len(args) > 1 else None)
    print(
        f"{check.url}: {len(check.images)} images, {len(check.broken_images)} broken, "
        f"{len(check.console_errors)} console errors, {len(check.remote_requests)} remote requests blocked"
    )
    for err in check.console_errors:
        print(f"  {err}")
    return 0 if check.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
