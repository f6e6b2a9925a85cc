"""Check the report's page as a browser shows it: a headless Chromium screenshot and DOM, read back.

    python scripts/check_report_page.py [--page reports/irrelevant_rate.html] [--chromium chromium]

Renders the page in a real browser (Debian's `chromium`; `make report-check` installs it), writes
<page folder>/irrelevant_rate_screenshot.png, and fails with one line unless: the browser ran, the
rendered DOM holds the per-day and per-industry tables, the plot image loaded (its natural width,
read by a script in the page as the browser saw it), and the screenshot is not blank.
Not part of `make test`: the tests need no browser.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageStat

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]
# Appended to a copy of the page: writes what the browser made of the plot into the DOM it dumps.
PROBE = """<script>window.addEventListener('load', () => { const i = document.querySelector('img');
document.body.setAttribute('data-img-width', i ? String(i.naturalWidth) : 'none'); });</script>"""


def browser(chromium: str, *args: str) -> str:
    done = subprocess.run([chromium, *FLAGS, *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        sys.exit(f"check_report_page: {chromium} failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return done.stdout


def check(page: Path, chromium: str) -> Path:
    shot = page.with_name("irrelevant_rate_screenshot.png")
    browser(chromium, "--window-size=1280,1800", f"--screenshot={shot}", page.resolve().as_uri())
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / page.name
        probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
        for png in page.parent.glob("*.png"):  # the page links its plot relatively
            shutil.copy(png, Path(tmp) / png.name)
        dom = browser(chromium, "--dump-dom", probe.as_uri())
    problems = [what for what, ok in (
        ("no per-day table", "<h2>Per day</h2>" in dom and "<td>" in dom),
        ("no per-industry table", "<h2>Per industry on " in dom),
        ("the plot did not load", 'data-img-width="' in dom and 'data-img-width="0"' not in dom
         and 'data-img-width="none"' not in dom),
    ) if not ok]
    with Image.open(shot) as image:
        spread = ImageStat.Stat(image.convert("L")).stddev[0]
        if spread < 5:
            problems.append(f"the screenshot is blank (grey-level spread {spread:.1f})")
    if problems:
        sys.exit(f"check_report_page: {page}: {'; '.join(problems)}")
    return shot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", type=Path, default=Path("reports/irrelevant_rate.html"))
    parser.add_argument("--chromium", default="chromium")
    args = parser.parse_args()
    if not args.page.is_file():
        sys.exit(f"check_report_page: no page at {args.page}; run `make demo` (or `hcmrm report`) first")
    shot = check(args.page, args.chromium)
    print(f"report page OK in {args.chromium}: tables, plot loaded; screenshot {shot.resolve()}")


if __name__ == "__main__":
    main()
