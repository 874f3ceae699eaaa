"""A small Chrome DevTools protocol client for the report tests: headless Chromium driven over
--remote-debugging-pipe (no port, no websocket library, nothing to install beyond Debian's `chromium`).

The pipe protocol: Chromium reads JSON commands from its fd 3 and writes JSON replies and events to its
fd 4, each message ended by a NUL byte. One browser serves a whole test session; each page opens in its
own target (tab) with its own CDP session.

`open_page` loads a file and reports what the tests check: console errors and uncaught exceptions,
every request that is not the page itself or a data: URL (the machine may have a network; the browser
is started with every host name unresolvable, so a request for one fails, and it is recorded anyway), the
document's scroll width at the window width, a PNG screenshot and a printed PDF.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    """The Chromium binary (Debian's `chromium`, or CHROMIUM=path), or None."""
    given = os.environ.get("CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    pass


@dataclass
class PageReport:
    url: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # URLs other than the page itself and data:
    failed: list[str] = field(default_factory=list)  # requests that failed (any URL)
    scroll_width: int = 0
    title: str = ""
    screenshot: bytes = b""
    pdf: bytes = b""
    values: dict = field(default_factory=dict)  # results of the extra expressions


class Chromium:
    """One headless browser process; close() (or the context manager) ends it and removes its profile."""

    def __init__(self, binary: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="onnx2caffe-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def child_fds():  # the browser's fd 3 reads commands, its fd 4 writes replies
            import fcntl

            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child_fds,
            pass_fds=(3, 4),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._events: queue.Queue = queue.Queue()
        self._cond = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.version = self.send("Browser.getVersion")["product"]

    # ---- transport
    def _read(self) -> None:
        buf = b""
        with os.fdopen(self._from_browser, "rb", buffering=0) as f:
            while True:
                chunk = f.read(1 << 16)
                if not chunk:
                    break
                buf += chunk
                while b"\0" in buf:
                    raw, buf = buf.split(b"\0", 1)
                    msg = json.loads(raw)
                    if "id" in msg:
                        with self._cond:
                            self._replies[msg["id"]] = msg
                            self._cond.notify_all()
                    else:
                        self._events.put(msg)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        mid = self._next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while mid not in self._replies:
                if self._closed:
                    raise CDPError(f"{method}: the browser closed the pipe")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CDPError(f"{method}: no reply in {self.timeout} s")
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def events(self) -> list[dict]:
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    # ---- pages
    def open_page(
        self, path: str | os.PathLike, width: int = 1280, height: int = 900, expressions: dict | None = None
    ) -> PageReport:
        """Load `path` in a new tab at width x height; see the module docstring. expressions: name -> JS
        expression evaluated after load (its value in report.values)."""
        url = Path(path).resolve().as_uri()
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        rep = PageReport(url)
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.send(f"{domain}.enable", session=session)
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            self.events()  # drop what about:blank produced
            self.send("Page.navigate", {"url": url}, session=session)
            deadline = time.monotonic() + self.timeout
            loaded = False
            seen: list[dict] = []
            while not loaded:
                if time.monotonic() > deadline:
                    raise CDPError(f"{url}: no load event in {self.timeout} s")
                try:
                    ev = self._events.get(timeout=0.5)
                except queue.Empty:
                    continue
                seen.append(ev)
                loaded = ev.get("method") == "Page.loadEventFired" and ev.get("sessionId") == session
            time.sleep(0.3)  # late console messages and requests of scripts run on load
            for name, expr in (expressions or {}).items():
                rep.values[name] = self.evaluate(session, expr)
            rep.scroll_width = self.evaluate(session, "document.documentElement.scrollWidth")
            rep.title = self.evaluate(session, "document.title")
            shot = self.send("Page.captureScreenshot", {"format": "png"}, session=session)
            rep.screenshot = base64.b64decode(shot["data"])
            pdf = self.send("Page.printToPDF", {"printBackground": False}, session=session)
            rep.pdf = base64.b64decode(pdf["data"])
            time.sleep(0.1)
            seen.extend(self.events())
            _classify(rep, [e for e in seen if e.get("sessionId") == session])
        finally:
            self.send("Target.closeTarget", {"targetId": target})
        return rep

    def evaluate(self, session: str, expr: str):
        res = self.send(
            "Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True}, session
        )
        if "exceptionDetails" in res:
            raise CDPError(f"{expr}: {res['exceptionDetails'].get('text')}")
        return res["result"].get("value")

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.send("Browser.close")
                except CDPError:
                    pass
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            os.close(self._to_browser)
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _classify(rep: PageReport, events: list[dict]) -> None:
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = d.get("exception", {}).get("description") or d.get("text")
            rep.console_errors.append(f"exception: {text}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            rep.console_errors.append(f"console.{p['type']}: {args}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
            e = p["entry"]
            rep.console_errors.append(f"log {e.get('source')}: {e.get('text')} {e.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            u = p.get("request", {}).get("url", "")
            if u != rep.url and not u.startswith("data:"):
                rep.requests.append(u)
        elif method == "Network.loadingFailed":
            rep.failed.append(f"{p.get('errorText')} ({p.get('requestId')})")


def png_is_blank(png: bytes) -> bool:
    """True when the screenshot is one flat colour (nothing rendered)."""
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError("not a PNG")
    return int(img.max()) - int(img.min()) < 16 or float(img.std()) < 2.0


def pdf_pages(pdf: bytes) -> int:
    """Pages in a PDF Chromium printed (its page objects are written uncompressed)."""
    import re

    return len(re.findall(rb"/Type\s*/Page[^s]", pdf))


def assert_renders(browser: Chromium, path, expressions: dict | None = None, width: int = 1280) -> PageReport:
    """Open `path` at `width` px and assert what every report page must do: no console error or uncaught
    exception, no request besides the page itself (no network, no other file), nothing wider than the
    window, a screenshot that is not one flat colour, and a printed PDF with at least one page."""
    rep = browser.open_page(path, width=width, expressions=expressions)
    assert rep.console_errors == [], rep.console_errors
    assert rep.requests == [] and rep.failed == [], (rep.requests, rep.failed)
    assert rep.scroll_width <= width, f"{path}: {rep.scroll_width} px wide in a {width}-px window"
    assert not png_is_blank(rep.screenshot), f"{path}: blank screenshot"
    assert rep.pdf.startswith(b"%PDF") and pdf_pages(rep.pdf) >= 1, f"{path}: no printed page"
    return rep
