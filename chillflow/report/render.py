"""The report's figures as one self-contained HTML page: inline CSS and SVG, no fetch, escaped."""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from string import Template
from typing import Any

from chillflow.report import charts

_STATUSES = {"passed", "warned", "quarantined", "failed", "succeeded", "running", "skipped"}
_PAGE = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>ChillFlow report</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;color:#1d2430;background:#f4f6f9;margin:0}
main{max-width:1100px;margin:0 auto;padding:0 20px 40px}
header{background:#1d3557;color:#fff;padding:18px 20px}h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.8}nav a{color:#fff;margin-right:16px}
h2{margin:32px 0 8px;border-bottom:2px solid #1d3557}h3{margin:22px 0 6px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0}
.card{background:#fff;border-radius:8px;padding:10px 16px;box-shadow:0 1px 3px #0002}
.card b{display:block;font-size:20px}.card span{color:#5a6478;font-size:12px}
table{border-collapse:collapse;background:#fff;margin:6px 0 10px;font-size:13px;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #e3e7ee;text-align:left;vertical-align:top}
th{background:#eef1f6}td.n{text-align:right;white-space:nowrap}code{color:#5a3a8a}
figure{background:#fff;margin:10px 0;padding:8px;border-radius:8px}figcaption{font-weight:600}
figure svg{width:100%;height:auto}summary{cursor:pointer;color:#2f6db5}
.badge{padding:1px 7px;border-radius:9px;font-size:12px;background:#dde3ec}
.passed,.succeeded{background:#d4f1dc}.warned,.running,.skipped{background:#fdf0c8}
.quarantined{background:#fde2c8}.failed{background:#f8d0d0}
.note{background:#fff8e1;border-left:4px solid #e0a800;padding:6px 10px}
</style></head><body>
<header><h1>ChillFlow Batch report</h1><p>$subtitle</p>
<nav><a href="#quality">Data quality</a><a href="#kpis">KPIs</a><a href="#runs">Runs</a>
<a href="#tables">Delta tables</a></nav></header>
<main><div class="cards">$cards</div>
<section id="quality"><h2>Data quality</h2>$quality</section>
<section id="kpis"><h2>KPIs</h2>$kpis</section>
<section id="runs"><h2>Runs</h2>$runs</section>
<section id="tables"><h2>Delta tables</h2>$tables</section>
</main></body></html>
""")


class _Html(str):
    """Markup made here from escaped parts, shown as it is."""


class _Number(_Html):
    """Markup of a number (right-aligned in tables)."""


def render_report(figures: dict[str, Any]) -> str:
    """Return the HTML page of ``figures`` (as built by ``collect_figures``)."""
    quality, kpis = figures["quality"], figures["kpis"]
    rows_in, curated = (sum(q[key] for q in quality) for key in ("rows_in", "curated"))
    cards = {
        "raw rows": rows_in,
        "curated": curated,
        "quarantined": sum(q["quarantined"] for q in quality),
        "retention": _pct(100 * curated / rows_in if rows_in else None),
        "KPI trips": sum(k["trips"] for k in kpis),
        "revenue (USD)": round(sum(k["revenue"] for k in kpis)),
        "failed recent runs": sum(r["status"] == "failed" for r in figures["runs"]),
    }
    return _PAGE.substitute(
        subtitle=_e(f"generated {figures['generated_at']} · months {', '.join(figures['months'])}"),
        cards="".join(
            f'<div class="card"><b>{_fmt(v)}</b><span>{k}</span></div>' for k, v in cards.items()
        ),
        quality=_quality(quality),
        kpis=_kpis(figures),
        runs=_runs(figures),
        tables=_records(figures["tables"], table=_bold, location=_code),
    )


def _quality(quality: list[dict[str, Any]]) -> str:
    if not quality:
        return _note("No data-quality metrics for these months: curate one first.")
    trend = charts.quality_trend(quality)
    parts = [_chart("chart-quality", "Retention and rule failure rates by month", trend)]
    for q in quality:
        parts.append(
            f"<h3>{_e(q['service'])} {_e(q['month'])}</h3><p>{_fmt(q['rows_in'])} rows in, "
            f"{_fmt(q['curated'])} curated, {_fmt(q['quarantined'])} quarantined: retention "
            f"{_pct(q['retention_pct'])} · run <code>{_e(q['run_id'])}</code> finished "
            f"{_e(q['finished_at'])} UTC</p>"
        )
        if q["rows_in"] != q["curated"] + q["quarantined"]:
            parts.append(_note("rows in ≠ curated + quarantined: a table changed after this run"))
        rate = {"failure_rate": _rate, "max_failure_rate": _rate, "evaluated": None}
        parts.append(
            _records(q["rules"], rule=_bold, action=_badge, status=_badge, predicate=_code, **rate)
        )
        if q["examples"]:
            examples = _records(q["examples"], rule=_bold)
            parts.append(
                f"<details><summary>Quarantined rows, 3 per rule</summary>{examples}</details>"
            )
    return "".join(parts)


def _kpis(figures: dict[str, Any]) -> str:
    if not figures["kpis"]:
        return _note(
            "No KPIs for these months: build them with `chillflow aggregate run --full-refresh`."
        )
    parts = []
    if not figures["zones_loaded"]:
        parts.append(_note("dim.zone is empty, so zones show as ids: load their names with "
                           "`chillflow db init --zones taxi_zone_lookup.csv`."))  # fmt: skip
    for k in figures["kpis"]:
        m, heatmap, daily = k["month"], charts.day_hour_heatmap(k), charts.daily(k)
        parts += [
            f"<h3>{_e(m)}</h3><p>{_fmt(k['trips'])} trips, {_fmt(k['revenue'])} USD revenue</p>",
            _chart(f"chart-heatmap-{m}", f"Trips by hour of day and day of month, {m}", heatmap),
            _chart(f"chart-zones-{m}", f"Busiest pickup zones, {m}", charts.top_zones(k)),
            _records(k["top_zones"]),
            _chart(f"chart-daily-{m}", f"Revenue, average fare, tip and speed by day, {m}", daily),
        ]
    return "".join(parts)


def _runs(figures: dict[str, Any]) -> str:
    if figures["database_error"]:
        return _note(
            f"No runs or zone names, PostgreSQL did not answer: {figures['database_error']}"
        )
    if not figures["runs"]:
        return _note("No runs recorded in ops.job_run yet.")
    return _records(figures["runs"], job=_bold, status=_badge)


def _chart(chart_id: str, title: str, svg: str) -> str:
    caption = f"<figcaption>{_e(title)}</figcaption>"
    return f'<figure class="chart" id="{_e(chart_id)}">{caption}{svg}</figure>'


def _records(records: list[dict[str, Any]], **formats: Callable[[Any], Any] | None) -> str:
    """A table of dicts, a column per key; ``formats`` maps keys to markup, or None to hide them."""
    keys = [k for k in dict.fromkeys(k for r in records for k in r) if formats.get(k, _same)]
    head = "".join(f"<th>{_e(key.replace('_', ' '))}</th>" for key in keys)
    body = "".join(
        "<tr>"
        + "".join(_cell((formats.get(key) or _same)(record.get(key))) for key in keys)
        + "</tr>"
        for record in records
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any) -> str:
    number = isinstance(value, (int, float, _Number)) and not isinstance(value, bool)
    return f'<td class="n">{_fmt(value)}</td>' if number else f"<td>{_fmt(value)}</td>"


def _fmt(value: Any) -> str:
    """Numbers with separators (floats to cents), lists joined, text escaped."""
    if isinstance(value, _Html):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    return "–" if value is None else _e(str(value))


def _same(value: Any) -> Any:
    return value


def _rate(fraction: float | None) -> _Number:
    return _pct(None if fraction is None else 100 * fraction)


def _pct(value: float | None) -> _Number:
    return _Number("–" if value is None else "&lt;0.01 %" if 0 < value < 0.01 else f"{value:.2f} %")


def _badge(status: str) -> _Html:
    return _Html(f'<span class="badge {status if status in _STATUSES else ""}">{_e(status)}</span>')


def _tag(name: str) -> Callable[[str], _Html]:
    return lambda text: _Html(f"<{name}>{_e(text)}</{name}>")


_bold, _code = _tag("b"), _tag("code")


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _e(text: str) -> str:
    return escape(text, quote=True)
