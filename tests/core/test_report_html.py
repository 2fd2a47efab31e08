"""`dinobench report`: Markdown/CSV/HTML agree; the HTML page renders in headless Chromium without errors."""

from __future__ import annotations

import base64
import csv
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import make_result, with_config

from dinobench.results import write_result

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DEPTH = {"dataset": {"type": "nyu"}, "protocol": {"type": "depth_linear"}}


def chromium_path() -> str | None:
    """Debian's chromium (never a downloaded browser)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def write_store(root: Path) -> Path:
    """Crafted records: 3 rows, 3 seeds on one, a lower-is-better task, an incomparable config, a figure."""
    out = root / "outputs"
    for seed, value in enumerate([48.5, 50.0, 51.25]):
        write_result(make_result(value, seed=seed, extra={"top1_k10": value - 1}), out)
    write_result(make_result(66.02, weights="/ckpt/teacher.pth", sha="5e" * 32, extra={"top1_k10": 64.0}), out)
    write_result(make_result(80.5, backbone="vits16", params=21_600_000, extra={"top1_k10": 79.0},
                             timings={"features_train_s": 9.0, "features_val_s": 2.0}), out)
    write_result(make_result(71.0, config=with_config(temperature=0.1)), out)
    figures = root / "predictions"
    figures.mkdir()
    pixels = (np.indices((48, 64)).sum(axis=0) % 7 * 36).astype(np.uint8)
    Image.fromarray(np.stack([pixels, pixels[::-1], 255 - pixels], axis=-1)).save(figures / "sample0.png")
    write_result(make_result(0.52, task="nyu-linear", metric="rmse", higher=False, config=DEPTH,
                             extra={"abs_rel": 0.2}), out, predictions=figures)
    write_result(make_result(0.47, task="nyu-linear", metric="rmse", higher=False, config=DEPTH, backbone="vits16",
                             params=21_600_000, extra={"abs_rel": 0.18}), out)
    return out


class _Tables(HTMLParser):
    """Text of every table cell of the table with id=leaderboard, plus which cells are marked best."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.best: list[tuple[int, int]] = []
        self._in, self._cell = False, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._in = attrs.get("id") == "leaderboard"
        elif self._in and tag == "tr":
            self.rows.append([])
        elif self._in and tag in ("td", "th"):
            self._cell = ""
            if attrs.get("class") == "best":
                self.best.append((len(self.rows) - 1, len(self.rows[-1])))

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = False
        elif self._in and tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _md_leaderboard(text: str) -> list[list[str]]:
    block = text.split("\n\n")[2].splitlines()
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in block if not line.startswith("|:-")]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from dinobench.cli import main

    root = tmp_path_factory.mktemp("report")
    out = write_store(root)
    code = main([ "report", str(out), "--output", str(root / "report"), "--title", "Crafted <board>"])
    assert code == 0
    return root / "report"


def test_markdown_csv_and_html_show_the_same_numbers(report):
    md = (report / "leaderboard.md").read_text()
    md_rows = _md_leaderboard(md)
    hot = make_result(0, config=with_config(temperature=0.1)).protocol_hash[:7]
    assert md_rows[0] == ["model", "weights", "params", "digits-knn top1 ↑", f"digits-knn [cfg {hot}] top1 ↑",
                          "nyu-linear rmse ↓"]
    assert md_rows[1:] == [
        ["vit_tiny", "random-init", "0.8M", "49.92 ± 1.38", "71.00", "0.5200"],  # alone: unmarked
        ["vit_tiny", "teacher.pth@5e5e5e5e", "0.8M", "66.02", "–", "–"],
        ["vits16", "random-init", "21.6M", "**80.50**", "–", "**0.4700**"],
    ]
    # every mean in the CSV (full precision) is the Markdown number, rounded
    with open(report / "leaderboard.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    seeds = [48.5, 50.0, 51.25]
    assert float(csv_rows[0]["digits-knn top1"]) == pytest.approx(np.mean(seeds), abs=1e-12)
    assert float(csv_rows[0]["digits-knn top1 std"]) == pytest.approx(np.std(seeds, ddof=1), abs=1e-12)
    assert csv_rows[0]["digits-knn top1 seeds"] == "3"
    for csv_row, md_row in zip(csv_rows, md_rows[1:]):
        for column, md_cell in zip(md_rows[0][3:], md_row[3:]):
            value = csv_row[column.rsplit(" ", 1)[0]]
            decimals = 4 if "rmse" in column else 2
            assert md_cell.strip("*").split(" ± ")[0] == (f"{float(value):.{decimals}f}" if value else "–")
    # the HTML table has the very same cells and marks the same best cells
    parser = _Tables()
    parser.feed((report / "report.html").read_text())
    assert parser.rows == [[c.strip("*") for c in row] for row in md_rows]
    md_best = [(i, j) for i, row in enumerate(md_rows) for j, c in enumerate(row) if c.startswith("**")]
    assert parser.best == md_best
    # per-task details, notes and provenance made it into the Markdown
    assert "| vit_tiny | random-init | 0,1,2 | 719 | 49.92 ± 1.38 | 48.92 ± 1.38 |" in md
    assert f"`digits-knn [cfg {hot}]`: not comparable with digits-knn: config differs: protocol.temperature=0.1" in md
    assert "- results shown: 8\n" in md and "- git commit: 0123456789\n" in md
    results = list(csv.DictReader(open(report / "results.csv", newline="")))
    assert len(results) == 8 and {r["metric.top1_k10"] for r in results if r["model"] == "vits16"} >= {"79.0"}


def test_html_is_self_contained(report):
    page = (report / "report.html").read_text()
    assert "<script" not in page.lower()
    assert not re.search(r"(src|href)\s*=\s*[\"'](?!data:)", page)  # no external resource of any kind
    assert "http://" not in page and "https://" not in page
    assert "Crafted &lt;board&gt;" in page  # escaped
    images = re.findall(r'src="data:(image/[a-z]+);base64,([^"]+)"', page)
    assert len(images) == 4  # score bars, score vs params, throughput, the saved prediction
    for mime, data in images[:3]:
        raw = base64.b64decode(data)
        assert mime == "image/png" and raw.startswith(b"\x89PNG") and len(raw) > 5000
    (saved,) = (report.parent / "outputs").rglob("predictions/sample0.png")  # moved beside its result.json
    assert images[3] == ("image/png", base64.b64encode(saved.read_bytes()).decode())
    assert page.count('class="prediction"') == 1 and "sample0.png" in page


def test_html_renders_in_headless_chromium_without_errors(report, tmp_path):
    browser = chromium_path()
    try:
        from playwright.sync_api import sync_playwright  # drives the system chromium; never downloads one
    except ImportError:
        sync_playwright = None
    if browser is None or sync_playwright is None:
        missing = "Debian chromium (apt-get install chromium)" if browser is None else "playwright (pip)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} is not installed; the CI setup must install it")
        pytest.skip(f"{missing} is not installed; CI installs it")
    messages: list[tuple[str, str]] = []
    with sync_playwright() as pw:  # playwright gives the browser a new, empty profile directory
        chrome = pw.chromium.launch(executable_path=browser, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = chrome.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: messages.append((m.type, m.text)))
            page.on("pageerror", lambda e: messages.append(("pageerror", str(e))))
            failed: list[str] = []
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto((report / "report.html").resolve().as_uri(), wait_until="load")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert page.locator("table#leaderboard tbody tr").count() == 3
            header = page.locator("table#leaderboard thead th").all_inner_texts()
            assert header[3] == "digits-knn top1 ↑" and header[-1] == "nyu-linear rmse ↓"
            plots = page.locator("figure.plot img")
            assert plots.count() == 3
            assert all(w > 100 for w in plots.evaluate_all("imgs => imgs.map(i => i.naturalWidth)"))
            assert page.locator("figure.prediction img").evaluate("i => i.naturalWidth") == 64
        finally:
            chrome.close()
    assert [m for m in messages if m[0] in ("error", "pageerror", "warning")] == []
    assert failed == []
    image = Image.open(shot)
    assert image.width >= 1280 and image.height > 900
    colours = np.asarray(image.convert("RGB").resize((128, 128))).reshape(-1, 3)
    assert len(np.unique(colours, axis=0)) > 50  # not a blank page


def test_report_errors_are_one_line(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("report", str(tmp_path / "empty"), "--output", str(tmp_path / "r"))
    assert code == 2 and "no result records found" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("report", str(tmp_path / "empty"), "--output", str(tmp_path / "r"), "--format", "pdf")
    assert code == 2 and "--format 'pdf'" in err
    code, _, err = run_cli("report", str(tmp_path / "empty"))
    assert code == 2 and "pass --output DIR" in err
    assert not (tmp_path / "r").exists()
