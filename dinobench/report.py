"""Render a :class:`~dinobench.leaderboard.Leaderboard` as Markdown, CSV and one self-contained HTML page.

The HTML page has inline CSS, no scripts and no external URL: plots (matplotlib, Agg, no pyplot state) and
saved prediction figures (``Result.artifacts``) are embedded as base64 images, so it can be mailed or
attached to a CI run as one file.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from dinobench.leaderboard import Cell, CheckRow, Column, Detail, Leaderboard, Row, provenance
from dinobench.utils.io import write_atomic
from dinobench.utils.units import format_params

FORMATS = ("md", "csv", "html")
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
MAX_FIGURES_PER_RUN, MAX_FIGURES, MAX_FIGURE_BYTES = 6, 48, 5 * 2**20
#: what PIL must recognise a file as for its mime type (an artifact embedded in a report decodes as what it claims)
_PIL_FORMATS = {"image/png": ("png",), "image/jpeg": ("jpeg", "mpo"), "image/gif": ("gif",)}


def decimals_for(values: Sequence[float]) -> int:
    """2 decimals for percent-like numbers, 4 when every value is below 1 (e.g. RMSE, AbsRel)."""
    finite = [abs(v) for v in values if v is not None and not math.isnan(v)]
    return 2 if finite and max(finite) >= 1 else 4


def format_cell(cell: Cell | None, decimals: int) -> str:
    """``49.86`` for one seed, ``49.86 ± 0.50`` for several, ``–`` when absent."""
    if cell is None:
        return "–"
    text = f"{cell.mean:.{decimals}f}"
    return text + (f" ± {cell.std:.{decimals}f}" if cell.std is not None else "")


def format_speed(value: float | None) -> str:
    """Images/s with no false precision."""
    return "–" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.2f}"


def leaderboard_rows(lb: Leaderboard) -> tuple[list[str], list[list[str]], list[list[bool]]]:
    """Header, text cells and best-marks of the leaderboard table (shared by Markdown and HTML)."""
    header = ["model", "weights", "params"] + [f"{c.label} {c.metric} {c.arrow}" for c in lb.columns]
    decimals = {c.label: decimals_for([lb.cells[r, c.label].mean for r in lb.rows if (r, c.label) in lb.cells])
                for c in lb.columns}
    body, marks = [], []
    for row in lb.rows:
        body.append([row[0], row[1], format_params(lb.params.get(row))]
                    + [format_cell(lb.cells.get((row, c.label)), decimals[c.label]) for c in lb.columns])
        marks.append([False] * 3 + [row in lb.best.get(c.label, set()) for c in lb.columns])
    return header, body, marks


def detail_rows(detail: Detail) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of one per-task detail table (all metrics, mean ± std over seeds)."""
    header = ["model", "weights", "seeds", "images/s"] + detail.metrics
    decimals = {m: decimals_for([detail.cells[r, m].mean for r in detail.rows if (r, m) in detail.cells])
                for m in detail.metrics}
    body = []
    for row in detail.rows:
        cells = [detail.cells.get((row, m)) for m in detail.metrics]
        seeds = next((c.seeds for c in cells if c is not None), [])
        body.append([row[0], row[1], ",".join(map(str, seeds)), format_speed(detail.throughput.get(row))]
                    + [format_cell(c, decimals[m]) for c, m in zip(cells, detail.metrics)])
    return header, body


def _table_cell(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.2f}"
    return "" if value is None else str(value)


def result_tables(lb: Leaderboard, detail: Detail) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(caption, header, text rows)`` of every table (per-class IoU, per-category AP, ...) the shown results
    of ``detail``'s column carry (``Result.tables``), one per result and table name."""
    sub = lb.runs[lb.runs["column"] == detail.column.label]
    out = []
    for _, run in sub.sort_values(["model", "weights_id", "seed"]).iterrows():
        for name, rows in (getattr(run["record"], "tables", None) or {}).items():
            if not rows:
                continue
            header = list(dict.fromkeys(str(k) for r in rows for k in r))
            body = [[_table_cell(r.get(k)) for k in header] for r in rows]
            out.append((f"{run['model']} · {run['weights_id']} · seed {run['seed']} · {name}", header, body))
    return out


def _numeric_columns(body: list[list[str]]) -> list[int]:
    def number(text: str) -> bool:
        try:
            float(text)
        except ValueError:
            return text == "–"
        return True
    return [j for j in range(len(body[0]) if body else 0) if all(number(row[j]) for row in body)]


def _column_caption(col: Column) -> str:
    return (f"{col.protocol} v{col.protocol_version} · protocol hash {col.protocol_hash} · "
            f"main metric {col.metric} {col.arrow}")


def md_escape(text: str) -> str:
    """``text`` as inert Markdown table-cell text: HTML escaped (names can hold ``<script>``), markup characters
    backslash-escaped, line breaks folded into spaces (a newline would split the row)."""
    text = html.escape(" ".join(str(text).splitlines()), quote=False)
    text = re.sub(r"([\\|*`])", r"\\\1", text)  # "_" stays: names are full of it, intraword it is inert
    return text.replace("](", "\\](")  # no [text](url) link; plain brackets ("[cfg 2ae03a4]") stay as they are


#: first characters a spreadsheet reads as a formula (OWASP CSV injection)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells cannot run as spreadsheet formulas: a text cell starting with
    ``= + - @`` (or tab / CR) that is not a plain number gets a leading ``'``. Numbers are left alone."""
    def cell(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(_FORMULA_START):
            try:
                float(value)
                return value
            except ValueError:
                return "'" + value
        return value

    out = frame.copy()
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]):
            out[column] = out[column].map(cell)
    return out


def _md_table(header: list[str], body: list[list[str]], marks: list[list[bool]] | None = None,
              numeric: Sequence[int] | None = None) -> str:
    numeric = range(2, len(header)) if numeric is None else numeric

    lines = ["| " + " | ".join(md_escape(h) for h in header) + " |",
             "|" + "|".join("--:" if i in numeric else ":--" for i in range(len(header))) + "|"]
    for i, row in enumerate(body):
        cells = [f"**{md_escape(c)}**" if marks and marks[i][j] else md_escape(c) for j, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


LEGEND = ("Main metric per task: ↑ higher is better, ↓ lower is better; **bold** = best in its column; "
          "mean ± sample std over seeds when several (seeds in the per-task tables). Results share a column "
          "only when task, protocol version and protocol hash (config + dataset) match.")


def leaderboard_markdown(lb: Leaderboard) -> str:
    """Just the leaderboard table, as Markdown (best per column in bold)."""
    return _md_table(*leaderboard_rows(lb))


def markdown(lb: Leaderboard, title: str) -> str:
    """The whole report as Markdown: leaderboard, notes, per-task details, provenance."""
    parts = [f"# {title}", LEGEND, leaderboard_markdown(lb)]
    notes = [f"- `{c.label}`: {c.note}" for c in lb.columns if c.note]
    if notes:
        parts.append("Columns listed apart:\n\n" + "\n".join(notes))
    for detail in lb.details:
        d_header, d_body = detail_rows(detail)
        parts += [f"## {detail.column.label}", _column_caption(detail.column), _md_table(d_header, d_body)]
        for caption, t_header, t_body in result_tables(lb, detail):
            parts += [f"### {caption}", _md_table(t_header, t_body, numeric=_numeric_columns(t_body))]
    parts.append("## Provenance\n\n" + "\n".join(f"- {k}: {', '.join(v)}" for k, v in provenance(lb.runs, lb.n_scanned).items() if v))
    return "\n\n".join(parts) + "\n"


def results_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every scanned result as one flat row (metrics as ``metric.<name>`` columns) for ``results.csv``."""
    keep = ["model", "weights_id", "task", "column", "protocol", "protocol_version", "protocol_hash", "seed",
            "main_metric", "main_value", "higher_is_better", "params", "throughput", "created_at", "git_commit",
            "dinobench_version", "torch_version", "device", "source", "note"]
    flat = df[keep].copy()
    metrics = pd.DataFrame([{f"metric.{k}": v for k, v in m.items()} for m in df["metrics"]], index=df.index)
    return pd.concat([flat, metrics], axis=1).sort_values(["task", "column", "model", "weights_id", "seed", "created_at"])


# ------------------------------------------------------------------ plots (matplotlib, Agg, no pyplot)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _grid(n: int, row_height: float) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(5.2 * ncols, row_height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _label(row: Row) -> str:
    return f"{row[0]} [{row[1]}]"


def plots(lb: Leaderboard) -> list[tuple[str, bytes]]:
    """(caption, PNG) for: score per task per backbone, score vs parameters, throughput."""
    colors = {row: f"C{i % 10}" for i, row in enumerate(lb.rows)}
    figures = []
    height = 0.9 + 0.32 * len(lb.rows)
    fig, axes = _grid(len(lb.columns), height)
    for ax, col in zip(axes, lb.columns):
        rows = [r for r in lb.rows if (r, col.label) in lb.cells]
        cells = [lb.cells[r, col.label] for r in rows]
        bars = ax.barh([_label(r) for r in rows], [c.mean for c in cells], xerr=[c.std or 0.0 for c in cells],
                       color=[colors[r] for r in rows])
        decimals = decimals_for([c.mean for c in cells])
        ax.bar_label(bars, labels=[f"{c.mean:.{decimals}f}" for c in cells], fontsize=7, label_type="center",
                     color="white")
        ax.invert_yaxis()
        ax.set_title(f"{col.label}\n{col.metric} {col.arrow}", fontsize=9)
        ax.tick_params(labelsize=7)
    figures.append(("Main metric per task and backbone (error bars: std over seeds)", _png(fig)))

    if any(v is not None for v in lb.params.values()):
        fig, axes = _grid(len(lb.columns), 3.4)
        for ax, col in zip(axes, lb.columns):
            for r in lb.rows:
                if (r, col.label) in lb.cells and lb.params.get(r):
                    x, y = lb.params[r], lb.cells[r, col.label].mean
                    ax.scatter(x, y, color=colors[r])
                    ax.annotate(_label(r), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=6)
            ax.set_xscale("log")
            ax.margins(x=0.3, y=0.15)
            ax.set_xlabel("parameters", fontsize=8)
            ax.set_title(f"{col.label}: {col.metric} {col.arrow}", fontsize=9)
            ax.tick_params(labelsize=7)
        figures.append(("Main metric vs backbone parameter count", _png(fig)))

    speeds = [(d.column, [(r, v) for r, v in d.throughput.items() if v]) for d in lb.details]
    speeds = [(c, rv) for c, rv in speeds if rv]
    if speeds:
        fig, axes = _grid(len(speeds), height)
        for ax, (col, pairs) in zip(axes, speeds):
            ax.barh([_label(r) for r, _ in pairs], [v for _, v in pairs], color=[colors[r] for r, _ in pairs])
            ax.invert_yaxis()
            ax.set_title(f"{col.label}: images/s", fontsize=9)
            ax.tick_params(labelsize=7)
        figures.append(("Feature-extraction throughput (images/s, device as recorded)", _png(fig)))
    return figures


def _run_image(run_dir: Path, name: Any) -> tuple[str, bytes] | None:
    """(mime type, bytes) of artifact ``name`` if it is a regular file inside ``run_dir`` (no absolute path, no
    ``..``, no symlink leading out), of an image type, small enough, and decodes as that image; else None (a
    results folder someone hands you cannot pull other files into a published report)."""
    if not isinstance(name, str) or not name or Path(name).is_absolute():
        return None
    base = run_dir.resolve()
    path = (run_dir / name).resolve()
    mime = IMAGE_TYPES.get(path.suffix.lower())
    if mime is None or base not in path.parents or not path.is_file() or path.stat().st_size > MAX_FIGURE_BYTES:
        return None
    content = path.read_bytes()
    try:
        from PIL import Image

        with Image.open(io.BytesIO(content)) as image:
            if (image.format or "").lower() not in _PIL_FORMATS.get(mime, ()):
                return None
            image.verify()
    except Exception:  # noqa: BLE001 - anything that does not decode as the image it claims to be is left out
        return None
    return mime, content


def prediction_figures(lb: Leaderboard) -> list[tuple[str, str, bytes]]:
    """(caption, mime type, bytes) of saved prediction images listed in the results' ``artifacts``."""
    found = []
    for _, run in lb.runs.sort_values(["column", "model", "weights_id", "seed"]).iterrows():
        record = run["record"]
        if not record.artifacts or not record.path or not str(record.path).endswith("result.json"):
            continue
        run_dir = Path(record.path).parent
        shown = 0
        for name in record.artifacts:
            data = _run_image(run_dir, name)
            if data is None:
                continue
            mime, content = data
            caption = f"{run['column']} · {run['model']} [{run['weights_id']}] · seed {run['seed']} · {name}"
            found.append((caption, mime, content))
            shown += 1
            if shown >= MAX_FIGURES_PER_RUN or len(found) >= MAX_FIGURES:
                break
        if len(found) >= MAX_FIGURES:
            break
    return found


# ------------------------------------------------------------------ HTML

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;
color:#1b1f24;background:#fff;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.88rem;display:block;overflow-x:auto}
th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:right;white-space:nowrap}
th{background:#f6f8fa}td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}
td.best{background:#dafbe1;font-weight:700}p.caption,.legend,li{color:#57606a;font-size:.88rem}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #d0d7de}figcaption{font-size:.85rem;color:#57606a}
"""


def _html_table(header: list[str], body: list[list[str]], marks: list[list[bool]] | None = None,
                table_id: str = "", cls: str = "") -> str:
    attrs = (f' id="{table_id}"' if table_id else "") + (f' class="{cls}"' if cls else "")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    lines = []
    for i, row in enumerate(body):
        cells = "".join((f'<td class="best"><strong>{html.escape(c)}</strong></td>' if marks and marks[i][j]
                         else f"<td>{html.escape(c)}</td>") for j, c in enumerate(row))
        lines.append(f"<tr>{cells}</tr>")
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _img(mime: str, data: bytes, alt: str) -> str:
    return f'<img src="data:{mime};base64,{base64.b64encode(data).decode()}" alt="{html.escape(alt)}">'


def html_page(lb: Leaderboard, title: str) -> str:
    """The report as one HTML page: tables, notes, embedded plots and prediction figures, provenance."""
    header, body, marks = leaderboard_rows(lb)
    out = [f"<h1>{html.escape(title)}</h1>", f'<p class="legend">{html.escape(LEGEND.replace("**", ""))}</p>',
           _html_table(header, body, marks, table_id="leaderboard", cls="leaderboard")]
    notes = [f"<li><code>{html.escape(c.label)}</code>: {html.escape(c.note)}</li>" for c in lb.columns if c.note]
    if notes:
        out.append("<p>Columns listed apart:</p><ul class=\"notes\">" + "".join(notes) + "</ul>")
    out.append("<h2>Plots</h2>")
    for caption, png in plots(lb):
        out.append(f'<figure class="plot">{_img("image/png", png, caption)}'
                   f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    for detail in lb.details:
        d_header, d_body = detail_rows(detail)
        out += [f"<h2>{html.escape(detail.column.label)}</h2>",
                f'<p class="caption">{html.escape(_column_caption(detail.column))}</p>',
                _html_table(d_header, d_body, cls="detail")]
        out += [f"<details class=\"result-table\"><summary>{html.escape(caption)}</summary>"
                f"{_html_table(t_header, t_body, cls='detail')}</details>"
                for caption, t_header, t_body in result_tables(lb, detail)]
    figures = prediction_figures(lb)
    if figures:
        out.append("<h2>Saved predictions</h2>")
        out += [f'<figure class="prediction">{_img(mime, data, caption)}<figcaption>{html.escape(caption)}'
                f"</figcaption></figure>" for caption, mime, data in figures]
    items = "".join(f"<li>{html.escape(k)}: {html.escape(', '.join(v))}</li>"
                    for k, v in provenance(lb.runs, lb.n_scanned).items() if v)
    out.append(f'<h2>Provenance</h2><ul class="provenance">{items}</ul>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{html.escape(title)}"
            f"</title><style>{CSS}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def write_report(df: pd.DataFrame, lb: Leaderboard, output: str | Path, formats: Sequence[str],
                 title: str) -> list[Path]:
    """Write ``leaderboard.md``, ``leaderboard.csv`` + ``results.csv`` and ``report.html`` as asked; return paths."""
    output = Path(output)
    written = []
    if "md" in formats:
        written.append(write_atomic(output / "leaderboard.md", markdown(lb, title)))
    if "csv" in formats:
        written.append(write_atomic(output / "leaderboard.csv", csv_safe(lb.to_frame()).to_csv(index=False)))
        written.append(write_atomic(output / "results.csv", csv_safe(results_table(df)).to_csv(index=False)))
    if "html" in formats:
        written.append(write_atomic(output / "report.html", html_page(lb, title)))
    return written


def check_rows(rows: list[CheckRow]) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of the ``dinobench check`` table (4 decimals, signed delta)."""
    header = ["status", "model", "weights", "task", "seed", "metric", "baseline", "result", "delta", "tol", "note"]
    body = [[r.status, r.model, r.weights_id, r.task, str(r.seed), f"{r.metric} {'↑' if r.higher_is_better else '↓'}",
             f"{r.baseline:.4f}", "–" if r.result is None else f"{r.result:.4f}",
             "–" if r.delta is None else f"{r.delta:+.4f}", f"{r.tolerance:g}", r.note] for r in rows]
    return header, body


def check_markdown(rows: list[CheckRow], verdict: str) -> str:
    """The check table as Markdown (for a PR comment or ``$GITHUB_STEP_SUMMARY``)."""
    header, body = check_rows(rows)
    return f"### dinobench check: {verdict}\n\n{_md_table(header, body, numeric=(4, 6, 7, 8, 9))}\n"
