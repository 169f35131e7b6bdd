"""The README's screenshots of `vidiff serve`, with the embedded model: `python scripts/webui_screenshots.py`
(needs the [test] extra and /usr/bin/chromium). Writes docs/webui-<tab>.png."""
import os
import sys
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
from playwright.sync_api import sync_playwright  # noqa: E402

from vidiff.webui.app import serve  # noqa: E402

DOCS = Path(__file__).parents[1] / "docs"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]

app, url = serve(block=False, port=int(sys.argv[1]) if len(sys.argv) > 1 else 7870)
with sync_playwright() as p:
    browser = p.chromium.launch_persistent_context(str(DOCS.parent / ".profile"), executable_path="/usr/bin/chromium",
                                                   args=FLAGS, viewport={"width": 1200, "height": 900})
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#generate")
    page.click("#generate")
    page.wait_for_selector("video[src]", timeout=300_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(DOCS / "webui-text-to-video.png"), full_page=True)
    for label, name in (("Image → video", "image-to-video"), ("Extend", "extend"), ("Evaluate", "evaluate")):
        page.get_by_role("tab", name=label).click()
        page.wait_for_timeout(500)
        page.screenshot(path=str(DOCS / f"webui-{name}.png"), full_page=True)
    browser.close()
app.close()
print("wrote", *sorted(DOCS.glob("webui-*.png")))
