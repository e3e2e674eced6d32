"""The live view in a real headless Chromium, driven over the Chrome DevTools Protocol: the status page
shows the annotated MJPEG stream (boxes drawn in the palette's colours, moving) and the health line."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
import yaml

from edge_daemon.web.live import _PALETTE
from tests.conftest import ROOT, Broker, free_port

TOLERANCE = 12  # per channel, for JPEG (and the browser's scaling)
MIN_PALETTE_PIXELS = 200


def palette_pixels(image: np.ndarray) -> int:
    """How many pixels of ``image`` (BGR) lie within TOLERANCE of a palette colour on every channel."""
    pixels = image.astype(np.int16)
    near = np.zeros(image.shape[:2], bool)
    for colour in _PALETTE:
        near |= (np.abs(pixels - np.array(colour, np.int16)) <= TOLERANCE).all(axis=2)
    return int(near.sum())


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the daemon exited ({proc.returncode}):\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} not ready after {timeout}s:\n{log.read_text(errors='replace')}")


class Cdp:
    """A minimal DevTools client on one page target: send a command, wait for its answer."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
        self.ws, self.next_id = ws, 0

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), 30)
            assert msg.type == aiohttp.WSMsgType.TEXT, f"DevTools socket: {msg}"
            data = json.loads(msg.data)
            if data.get("id") == self.next_id:
                assert "error" not in data, f"{method}: {data['error']}"
                return dict(data["result"])

    async def eval(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.eval(expression)
            if value:
                return value
            await asyncio.sleep(0.5)
        pytest.fail(f"still false after {timeout}s: {expression}")

    async def screenshot(self) -> np.ndarray:
        shot = await self.send("Page.captureScreenshot", format="png")
        image = cv2.imdecode(np.frombuffer(base64.b64decode(shot["data"]), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None
        return np.asarray(image)


async def _look(devport: int, page_url: str) -> tuple[np.ndarray, np.ndarray, dict[str, float], str]:
    """Open the page; two screenshots 2 s apart once the stream shows, the live view's rect (in screenshot
    pixels) and the health line."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{devport}/json/list") as r:
            targets = await r.json()
        target = next(t for t in targets if t["type"] == "page")
        async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            cdp = Cdp(ws)
            await cdp.send("Page.enable")
            await cdp.send("Page.navigate", url=page_url)
            await cdp.wait_for("(document.getElementById('live-cam0') || {}).naturalWidth > 0", 60)
            health = await cdp.wait_for(
                "(t => t.includes('connected') && t.includes('fps') && t)"
                "((document.getElementById('health-cam0') || {}).textContent || '')",
                30,
            )
            await asyncio.sleep(1.0)  # let the browser paint a few more frames
            rect = json.loads(
                await cdp.eval("JSON.stringify(document.getElementById('live-cam0').getBoundingClientRect())")
            )
            dpr = float(await cdp.eval("window.devicePixelRatio"))
            first = await cdp.screenshot()
            await asyncio.sleep(2.0)
            second = await cdp.screenshot()
    box = {k: float(rect[k]) * dpr for k in ("x", "y", "width", "height")}
    return first, second, box, str(health)


@pytest.mark.slow
def test_live_view_in_headless_chromium(tmp_path: Path, broker: Broker, clip: Path, world_onnx: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (scripts/setup-system.sh installs it)")
    port = free_port()
    cam = {"name": "cam0", "type": "file", "path": str(clip), "loop": True, "realtime": True}
    settings = {
        "device_id": "browserdev",
        "cameras": [{**cam, "drop_policy": "latest"}],
        "model": {"path": str(world_onnx)},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "connect_timeout_s": 5},
        "log": {"stats_interval_s": 1},
        "http": {"enabled": True, "host": "127.0.0.1", "port": port, "live_view": True},
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    log = tmp_path / "daemon.log"
    profile = tmp_path / "profile"
    started = time.monotonic()
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "edge_daemon", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "EDGE_HTTP__ENABLED": "true"},
        )
    browser: subprocess.Popen[bytes] | None = None
    try:
        _wait_ready(f"http://127.0.0.1:{port}/healthz/ready", daemon, log)
        print(f"daemon ready after {time.monotonic() - started:.1f}s")
        flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0"]
        browser = subprocess.Popen(
            [chromium, *flags, f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.is_file() and active.read_text().strip()):
            assert browser.poll() is None, f"chromium exited ({browser.returncode})"
            assert time.monotonic() < deadline, "chromium wrote no DevToolsActivePort in 30s"
            time.sleep(0.2)
        devport = int(active.read_text().splitlines()[0])
        first, second, box, health = asyncio.run(_look(devport, f"http://127.0.0.1:{port}/"))
    finally:
        if browser is not None:
            browser.terminate()
            try:
                browser.wait(15)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    cv2.imwrite(str(tmp_path / "live.png"), second)

    x, y = round(box["x"]), round(box["y"])
    w, h = round(box["width"]), round(box["height"])
    assert w >= 160 and h >= 120 and x + w <= second.shape[1] and y + h <= second.shape[0], box
    views = [shot[y : y + h, x : x + w] for shot in (first, second)]
    cap = cv2.VideoCapture(str(clip))
    ok, raw = cap.read()
    cap.release()
    assert ok
    control = palette_pixels(cv2.resize(raw, (w, h), interpolation=cv2.INTER_AREA))
    annotated = [palette_pixels(v) for v in views]
    diff = float(np.abs(views[0].astype(np.int16) - views[1].astype(np.int16)).mean())
    std = float(views[1].std())
    print(f"health: {health!r}; live view {w}x{h} at ({x},{y}); std {std:.1f}")
    print(f"palette pixels: annotated {annotated}, raw frame {control}; mean abs diff {diff:.2f}")
    print(f"took {time.monotonic() - started:.1f}s")
    assert std > 20, f"the live view is blank (std {std:.1f}): see {tmp_path / 'live.png'}"
    assert max(annotated) >= MIN_PALETTE_PIXELS > 4 * control, f"no boxes drawn: {annotated} vs {control}"
    assert diff > 2.0, f"the live view does not move (mean abs diff {diff:.2f})"
