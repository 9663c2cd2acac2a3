"""Screenshots of `rapport view` at 900 px for the docs: a judged simulated corpus with people's
reviews (tests/viewer_reviews.py), served, and each page captured whole in headless Chromium.

    python scripts/view_screenshots.py [--out docs/images] [--count 40]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.headless_browser import Browser, chromium_binary  # noqa: E402
from tests.viewer_helpers import judged_corpus, serving  # noqa: E402
from tests.viewer_reviews import review_corpus  # noqa: E402

WIDTH = 900
PAGES = (("view_overview.png", "/"), ("view_agreement.png", "/agreement"))


async def capture(base: str, out: Path) -> None:
    binary = chromium_binary()
    if binary is None:
        raise SystemExit("error: no chromium on PATH")
    async with Browser(binary) as browser:
        for name, path in PAGES:
            metrics = {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False}
            await browser.send("Emulation.setDeviceMetricsOverride", metrics)
            await browser.goto(base + path)
            height = await browser.evaluate("document.documentElement.scrollHeight")
            await browser.send("Emulation.setDeviceMetricsOverride", {**metrics, "height": height})
            (out / name).write_bytes(await browser.screenshot())
            print(f"written: {out / name} ({WIDTH} × {height} px)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--count", type=int, default=40, help="conversations in the corpus")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rapport-shots-") as folder:
        db, _ = judged_corpus(Path(folder), args.count)
        review_corpus(db)
        with serving(db) as viewer:
            asyncio.run(capture(viewer.base, args.out))


if __name__ == "__main__":
    main()
