"""The notice screenshots of docs/notices.md: the HTML part of every kind's Japanese sample, as headless
Chromium (/usr/bin/chromium) shows it. `PYTHONPATH=tests .venv/bin/python -m devtools.notice_screenshots`
writes docs/notices/<kind>.ja.png (small: 640 px wide, scale 1, the mail's own height)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from cloudbackup import settings
from cloudbackup.notices import samples, templating

OUT = settings.PROJECT_ROOT / "docs" / "notices"
BROWSER_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--font-render-hinting=none"]


def main(language: str = "ja") -> int:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        written = samples.write_previews(Path(tmp))
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 640, "height": 400}, device_scale_factor=1)
        for kind in templating.KINDS:
            html = next(w for w in written if w.name == f"{kind}.{language}.html")
            page.goto(html.as_uri())
            target = OUT / f"{kind}.{language}.png"
            page.screenshot(path=str(target), full_page=True)
            print(f"{target.relative_to(settings.PROJECT_ROOT)}: {target.stat().st_size:,} bytes")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
