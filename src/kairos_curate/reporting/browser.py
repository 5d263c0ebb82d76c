"""Open an HTML file in headless Chromium, check it rendered, and take a screenshot.

Pure standard library: Chromium is started with ``--remote-debugging-port=0``, its DevTools
endpoint is read from the profile's ``DevToolsActivePort`` file, and a minimal WebSocket client
(RFC 6455 framing, client-side masking) speaks the Chrome DevTools Protocol to it. No browser is
downloaded; the Debian package ``chromium`` (``/usr/bin/chromium``) is used, or ``$CHROMIUM``.

What is checked (:class:`PageCheck`):

* every ``<img>`` finished loading with ``naturalWidth > 0``;
* no console message of level ``error``, no uncaught exception, no failed resource load
  (DevTools ``Runtime.consoleAPICalled``, ``Runtime.exceptionThrown``, ``Log.entryAdded``).

Command line (used to refresh the screenshots under ``reports/screenshots/``)::

    python -m kairos_curate.reporting.browser reports/capstone.html reports/screenshots/capstone.png
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kairos_curate.io import atomic_write

__all__ = ["CHROMIUM_FLAGS", "BrowserError", "PageCheck", "check_page", "find_chromium", "main"]

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

_IMAGE_PROBE = """
(async () => {
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => {
    i.addEventListener('load', r); i.addEventListener('error', r); })));
  return JSON.stringify({
    title: document.title,
    height: document.documentElement.scrollHeight,
    text: (document.body ? document.body.innerText : '').slice(0, 2000),
    images: imgs.map(i => ({src: (i.currentSrc || i.src).slice(0, 80), alt: i.alt,
                            naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight}))
  });
})()
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
        ``naturalHeight``.
    console_errors : list of str
        Console errors, uncaught exceptions and failed loads, in order of arrival.
    screenshot : bytes
        PNG of the first screen (viewport), empty if none was taken.
    first_screen_text : str
        The beginning of ``document.body.innerText`` (what a reader sees first).
    page_height : int
        Height of the whole document in CSS pixels.
    """

    url: str
    title: str = ""
    images: list[dict[str, Any]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    first_screen_text: str = ""
    page_height: int = 0

    @property
    def broken_images(self) -> list[dict[str, Any]]:
        """Images whose ``naturalWidth`` is 0 (failed to load or decode)."""
        return [img for img in self.images if not img.get("naturalWidth")]

    @property
    def ok(self) -> bool:
        """True when every image loaded and no console error was seen."""
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


class _WebSocket:
    """The smallest WebSocket client the DevTools protocol needs (text frames, no extensions)."""

    def __init__(self, url: str, timeout: float) -> None:
        if not url.startswith("ws://"):
            raise BrowserError(f"unsupported DevTools URL {url!r}")
        hostport, _, path = url[len("ws://"):].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise BrowserError("DevTools closed the connection during the WebSocket handshake")
            response += chunk
        head, _, self._buffer = response.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise BrowserError(f"DevTools refused the WebSocket: {head[:200]!r}")

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            if not chunk:
                raise BrowserError("DevTools connection closed")
            self._buffer += chunk
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def send(self, text: str) -> None:
        payload = text.encode()
        header = bytearray([0x81])  # FIN + text frame
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + mask + masked)

    def _send_control(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack(">H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack(">Q", self._read(8))
            mask = self._read(4) if b1 & 0x80 else b""
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:  # ping
                self._send_control(0xA, payload)
                continue
            if opcode == 0x8:
                raise BrowserError("DevTools closed the WebSocket")
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if b0 & 0x80:
                    return message.decode()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_control(0x8, b"")
        self.sock.close()


class _DevTools:
    """Synchronous DevTools session on one page target."""

    def __init__(self, ws: _WebSocket) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        call_id = self.next_id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == call_id:
                if "error" in msg:
                    raise BrowserError(f"DevTools {method} failed: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, method: str, deadline: float) -> dict[str, Any]:
        for event in self.events:
            if event["method"] == method:
                return event
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method:
                    return msg
        raise BrowserError(f"timed out waiting for {method}")


@contextlib.contextmanager
def _chromium(binary: str, width: int, height: int, timeout: float) -> Iterator[str]:
    """Start headless Chromium on a fresh profile; yield the page target's WebSocket URL."""
    # Chromium's helper processes can still be writing into the profile for a moment after the
    # main process exits; a leftover temporary profile must not fail a page check.
    with tempfile.TemporaryDirectory(prefix="kairos-chromium-", ignore_cleanup_errors=True) as profile:
        cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
               "--remote-debugging-address=127.0.0.1", f"--window-size={width},{height}", "about:blank"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not (port_file.exists() and port_file.read_text().strip()):
                if proc.poll() is not None:
                    raise BrowserError(f"{binary} exited with status {proc.returncode} before DevTools started")
                if time.monotonic() > deadline:
                    raise BrowserError(f"{binary} did not open its DevTools port within {timeout:.0f} s")
                time.sleep(0.05)
            while True:
                try:
                    port = int(port_file.read_text().split()[0])
                    break
                except (ValueError, IndexError):  # file seen mid-write
                    if time.monotonic() > deadline:
                        raise BrowserError(f"unreadable {port_file}") from None
                    time.sleep(0.05)
            page_url = None
            while page_url is None:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as resp:
                    targets = json.loads(resp.read())
                page_url = next((t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"), None)
                if page_url is None:
                    if time.monotonic() > deadline:
                        raise BrowserError("Chromium opened no page target")
                    time.sleep(0.05)
            yield page_url
        finally:
            # The browser runs in its own session: end the whole process group (renderer, zygote,
            # crash handler), not just the main process.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _event_errors(events: Sequence[dict[str, Any]]) -> list[str]:
    errors = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = params.get("args", [])
            errors.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in args))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            errors.append(f"uncaught exception: {text}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                errors.append(f"{entry.get('source', 'log')}: {entry.get('text', '')} {entry.get('url', '')}".strip())
    return errors


def check_page(html_path: str | os.PathLike[str], screenshot: str | os.PathLike[str] | None = None, *,
               width: int = 1280, height: int = 900, chromium: str | None = None,
               timeout: float = 60.0, full_page: bool = False) -> PageCheck:
    """Open ``html_path`` in headless Chromium and report images, console errors and a screenshot.

    Parameters
    ----------
    html_path
        The HTML file to open (as a ``file://`` URL).
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
    page = Path(html_path).resolve()
    if not page.exists():
        raise FileNotFoundError(f"HTML file {page} not found")
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError("no Chromium found: install Debian's `chromium` (apt-get install -y chromium) "
                                "or set $CHROMIUM to a Chromium/Chrome binary")
    url = page.as_uri()
    try:
        info, png, errors = _run_page(binary, url, width, height, timeout, full_page)
    except (OSError, json.JSONDecodeError) as err:  # socket timeouts, refused connections, truncated replies
        raise BrowserError(f"Chromium ({binary}) did not answer while opening {url}: {err}") from err
    if screenshot is not None:
        with atomic_write(screenshot, "wb") as handle:
            handle.write(png)
    return PageCheck(url=url, title=str(info["title"]), images=list(info["images"]), console_errors=errors,
                     screenshot=png, first_screen_text=str(info["text"]), page_height=int(info["height"]))


def _run_page(binary: str, url: str, width: int, height: int, timeout: float,
              full_page: bool) -> tuple[dict[str, Any], bytes, list[str]]:
    with _chromium(binary, width, height, timeout) as ws_url:
        ws = _WebSocket(ws_url, timeout)
        try:
            tools = _DevTools(ws)
            for domain in ("Page", "Runtime", "Log"):
                tools.call(f"{domain}.enable")
            tools.call("Emulation.setDeviceMetricsOverride",
                       {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
            tools.call("Page.navigate", {"url": url})
            tools.wait_for("Page.loadEventFired", time.monotonic() + timeout)
            probe = tools.call("Runtime.evaluate", {"expression": _IMAGE_PROBE, "awaitPromise": True,
                                                    "returnByValue": True})
            if "exceptionDetails" in probe:
                raise BrowserError(f"page probe failed: {probe['exceptionDetails']}")
            info = json.loads(probe["result"]["value"])
            shot_params: dict[str, Any] = {"format": "png"}
            if full_page:
                shot_params["captureBeyondViewport"] = True
                shot_params["clip"] = {"x": 0, "y": 0, "width": width, "height": int(info["height"]), "scale": 1}
            png = base64.b64decode(tools.call("Page.captureScreenshot", shot_params)["data"])
            # Give late console messages a moment to arrive, then drain them.
            tools.call("Runtime.evaluate", {"expression": "1"})
            errors = _event_errors(tools.events)
        finally:
            ws.close()
    return info, png, errors


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kairos_curate.reporting.browser PAGE.html [SHOT.png]``: check and screenshot."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or len(args) > 2:
        print(main.__doc__)
        return 0 if args and args[0] in ("-h", "--help") else 2
    check = check_page(args[0], args[1] if len(args) > 1 else None)
    print(f"{check.url}: {len(check.images)} images, {len(check.broken_images)} broken, "
          f"{len(check.console_errors)} console errors")
    for err in check.console_errors:
        print(f"  {err}")
    return 0 if check.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
