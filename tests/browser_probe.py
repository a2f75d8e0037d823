"""Measure a rendered HTML report in headless chromium: words broken across lines, elements
that stick out of the window, page width (used by the ``browser``-marked tests)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

#: A word (text between ASCII white space; a no-break space joins) is broken when the
#: rectangles of its characters lie on more than one line.
PROBE_JS = """
(function () {
  const broken = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let node;
  while ((node = walker.nextNode())) {
    const tag = node.parentElement ? node.parentElement.tagName : "";
    if (tag === "SCRIPT" || tag === "STYLE") continue;
    const re = /[^ \\t\\n\\r]+/g;
    let m;
    while ((m = re.exec(node.textContent))) {
      const r = document.createRange();
      r.setStart(node, m.index);
      r.setEnd(node, m.index + m[0].length);
      const tops = [];
      for (const q of r.getClientRects()) {
        if (q.width > 0 && !tops.some(t => Math.abs(t - q.top) < 3)) tops.push(q.top);
      }
      if (tops.length > 1) broken.push(m[0]);
    }
  }
  const view = document.documentElement.clientWidth;
  const wide = [];
  for (const el of document.querySelectorAll("table, img, pre, p, ul, h1, h2")) {
    const b = el.getBoundingClientRect();
    if (b.right > view + 0.5) wide.push(el.tagName + "#" + el.id + ":" + Math.round(b.right));
  }
  const tables = {};
  for (const t of document.querySelectorAll("table[id]")) {
    tables[t.id] = t.getBoundingClientRect().width;
  }
  document.body.setAttribute("data-probe", JSON.stringify({
    broken: broken, wide: wide, tables: tables, view: view,
    page: document.documentElement.scrollWidth}));
})();
"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def probe(page: Path, width: int, profile: Path) -> dict:
    """Render ``page`` in a ``width``-px window and return what :data:`PROBE_JS` measured:
    ``broken`` words, ``wide`` elements past the window's right edge, ``tables`` (id →
    width), ``view`` and ``page`` widths."""
    probe_page = page.with_name(f"{page.stem}.probe{width}.html")
    probe_page.write_text(page.read_text().replace("</body>", f"<script>{PROBE_JS}</script></body>"))
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
           f"--window-size={width},900", "--dump-dom", probe_page.as_uri()]
    dom = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout
    probe_page.unlink()
    return json.loads(html.unescape(re.search(r'data-probe="([^"]*)"', dom).group(1)))
