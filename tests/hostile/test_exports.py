"""Exports others read: names with HTML, Markdown markup, newlines and spreadsheet formulas stay inert."""

import csv
import io
import re

from helpers import make_result

from dinobench.report import csv_safe, md_escape
from dinobench.results import write_result

HOSTILE_BACKBONE = "<img src=x onerror=alert(1)>|evil\nrow *bold*"
FORMULA_WEIGHTS = "=HYPERLINK(\"http://x\",\"click\")"


def test_md_escape_and_csv_safe_on_their_own():
    assert md_escape("<b>a</b>|c\nd") == "&lt;b&gt;a&lt;/b&gt;\\|c d"
    assert md_escape("vit_tiny 49.30 ± 0.20") == "vit_tiny 49.30 ± 0.20"  # ordinary text unchanged
    import pandas as pd

    frame = csv_safe(pd.DataFrame({"name": ["=1+1", "+cmd", "-2+3", "@sum", "-1.5", "plain"], "v": [1, -2, 3, 4, 5, 6]}))
    assert frame["name"].tolist() == ["'=1+1", "'+cmd", "'-2+3", "'@sum", "-1.5", "plain"]
    assert frame["v"].tolist() == [1, -2, 3, 4, 5, 6]  # numbers are never prefixed


def test_report_of_hostile_names_is_inert_in_markdown_csv_and_html(run_cli, tmp_path):
    results = tmp_path / "results"
    write_result(make_result(50.0, backbone=HOSTILE_BACKBONE, weights=FORMULA_WEIGHTS, sha="a" * 64), results)
    code, _, err = run_cli("report", str(results), "--output", str(tmp_path / "report"), "--format", "md,csv,html")
    assert code == 0, err
    board = (tmp_path / "report" / "leaderboard.md").read_text()
    assert "<img" not in board and "&lt;img" in board
    blocks, current = [], []
    for line in board.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks, current = blocks + [current], []
    assert blocks
    for table in blocks:  # no row split by the newline, no extra column from the pipe
        assert len({len(re.findall(r"(?<!\\)\|", line)) for line in table}) == 1, table
        assert all(line.endswith("|") for line in table)
    for name in ("leaderboard.csv", "results.csv"):
        rows = list(csv.reader(io.StringIO((tmp_path / "report" / name).read_text())))
        cells = [c for row in rows[1:] for c in row]
        assert not any(c.startswith(("=", "+", "@")) for c in cells), (name, cells)
        assert any(c.startswith("'=HYPERLINK") or "<img" in c for c in cells)
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<img src=x" not in page and "&lt;img src=x" in page
