"""Screenshot of the top of a report page in headless Chromium, as a small palette PNG (the README's picture).

    python scripts/report_screenshot.py PAGE.html OUT.png [--width 1280] [--height 1100] [--colors 96]

Uses the DevTools-pipe client of the tests (tests/chromium.py) and Debian's chromium."""

from __future__ import annotations

import argparse
import io
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import chromium  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page")
    ap.add_argument("output")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1100)
    ap.add_argument("--colors", type=int, default=96, help="palette size of the PNG (smaller file)")
    args = ap.parse_args()
    binary = chromium.find_chromium()
    if binary is None:
        print("no chromium: apt-get install chromium", file=sys.stderr)
        return 2
    from PIL import Image

    with chromium.Chromium(binary) as browser:
        rep = browser.open_page(args.page, width=args.width, height=args.height)
    if rep.console_errors or rep.requests:
        print(f"the page is not clean: {rep.console_errors} {rep.requests}", file=sys.stderr)
        return 1
    img = Image.open(io.BytesIO(rep.screenshot)).convert("RGB")
    img = img.quantize(colors=args.colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    img.save(args.output, optimize=True)
    print(f"wrote {args.output} ({os.path.getsize(args.output) // 1024} KB, {img.width}x{img.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
