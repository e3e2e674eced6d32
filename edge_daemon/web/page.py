"""The status page: every camera's live view and its health, refreshed from ``/api/status`` every 2 s."""

from __future__ import annotations

import html

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edge-daemon</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem; background: #111; color: #eee; }}
h1 {{ font-size: 1.2rem; }} .cams {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
figure {{ margin: 0; background: #222; padding: .5rem; border-radius: 6px; }}
img {{ display: block; max-width: 100%; width: 640px; background: #000; min-height: 120px; }}
figcaption {{ font-size: .85rem; margin-top: .4rem; }} .down {{ color: #f66; }} .up {{ color: #6f6; }}
pre {{ font-size: .8rem; color: #aaa; }}
</style></head><body>
<h1>edge-daemon <span id="device"></span></h1>
<p id="engine"></p>
<div class="cams">
{cameras}
</div>
<script>
async function refresh() {{
  try {{
    const r = await fetch("/api/status", {{cache: "no-store"}});
    const s = await r.json();
    const info = s.info || {{}};
    document.getElementById("device").textContent = info.device_id || "";
    document.getElementById("engine").textContent =
      `${{s.phase}} · ${{info.model || ""}} · ${{info.backend || ""}} ${{info.precision || ""}}`;
    for (const [name, cam] of Object.entries((s.health || {{}}).cameras || {{}})) {{
      const el = document.getElementById("health-" + name);
      if (!el) continue;
      el.className = cam.connected ? "up" : "down";
      el.textContent = `${{cam.connected ? "connected" : "down"}} · ${{cam.fps}} fps · ` +
        `${{cam.frames}} frames · ${{cam.dropped_by_policy}} dropped · ` +
        `detection ${{cam.detect === false ? "off" : "on"}}` +
        (cam.last_error ? ` · ${{cam.last_error}}` : "");
    }}
  }} catch (e) {{ document.getElementById("engine").textContent = "status unavailable: " + e; }}
}}
refresh(); setInterval(refresh, 2000);
</script>
</body></html>
"""

_CAMERA = """<figure><img id="live-{id}" alt="{name} live" src="/cameras/{name}/stream.mjpeg">
<figcaption><b>{name}</b> <span id="health-{name}">…</span></figcaption></figure>"""


def status_page(cameras: list[str]) -> str:
    """The page's HTML for these camera names (topic-safe names: letters, digits, ``_.-``)."""
    return _PAGE.format(
        cameras="\n".join(_CAMERA.format(id=html.escape(c), name=html.escape(c)) for c in cameras)
    )
