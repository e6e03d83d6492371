"""The report's charts as inline SVG with text as text and marks carrying ids (``gid``)."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402 - after choosing the backend

_STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "chillflow",  # the same figures give the same SVG
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
_BLUE, _ORANGE, _GREEN = "#2f6db5", "#e07b24", "#3a9a5b"


@matplotlib.rc_context(_STYLE)
def quality_trend(quality: list[dict[str, Any]]) -> str:
    """Retention, and the failure rate of every rule that failed rows, per service and month."""
    x = range(len(quality))
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    retention, failures = fig.subplots(2, 1, sharex=True)
    retention.plot(x, [q["retention_pct"] for q in quality], "o-", color=_BLUE, gid="retention")
    retention.set_ylabel("retention %")
    rules = sorted({r["rule"] for q in quality for r in q["rules"] if r["failed"]})
    for rule in rules:
        rates = [next((100 * r["failure_rate"] for r in q["rules"] if r["rule"] == rule), None)
                 for q in quality]  # fmt: skip
        failures.plot(x, rates, "o-", label=rule, gid=f"rule-{rule}")
    if rules:
        failures.legend(fontsize=7, ncols=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    failures.set_ylabel("failed rows %")
    failures.set_xticks(list(x), [f"{q['service']} {q['month']}" for q in quality])
    return _svg(fig)


@matplotlib.rc_context(_STYLE)
def day_hour_heatmap(kpi: dict[str, Any]) -> str:
    """Trips by hour of day (rows) and day of month (columns)."""
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ax = fig.subplots()
    days = kpi["by_day_hour"]
    extent = (0.5, len(days) + 0.5, -0.5, 23.5)
    image = ax.imshow(list(zip(*days, strict=True)), aspect="auto", origin="lower", extent=extent)
    image.set_gid("heatmap")
    ax.grid(False)
    ax.set(xlabel=f"day of {kpi['month']}", ylabel="hour of day", yticks=range(0, 24, 3))
    fig.colorbar(image, ax=ax, label="trips", pad=0.01)
    return _svg(fig)


@matplotlib.rc_context(_STYLE)
def top_zones(kpi: dict[str, Any]) -> str:
    """Trips of the busiest pickup zones, the busiest on top."""
    zones = kpi["top_zones"][::-1]
    fig = Figure(figsize=(9, 0.8 + 0.28 * len(zones)), layout="constrained")
    ax = fig.subplots()
    bars = ax.barh(range(len(zones)), [z["trips"] for z in zones], color=_BLUE)
    for i, bar in enumerate(bars):
        bar.set_gid(f"bar-{i}")
    ax.set_yticks(range(len(zones)), [_text(zone_label(z)) for z in zones])
    ax.bar_label(bars, labels=[f"{z['trips']:,}" for z in zones], padding=3, fontsize=7)
    ax.set_xlabel("trips")
    ax.grid(axis="y", visible=False)
    return _svg(fig)


@matplotlib.rc_context(_STYLE)
def daily(kpi: dict[str, Any]) -> str:
    """Revenue per day (bars), average fare and tip (USD), and average speed (km/h)."""
    days = [d["day"] for d in kpi["daily"]]
    fig = Figure(figsize=(9, 5.4), layout="constrained")
    revenue, money, speed = fig.subplots(3, 1, sharex=True, height_ratios=(3, 2, 2))
    for day, bar in zip(
        days, revenue.bar(days, [d["revenue"] for d in kpi["daily"]], color=_GREEN), strict=True
    ):
        bar.set_gid(f"day-{day}")
    revenue.set_ylabel("revenue (USD)")
    revenue.yaxis.set_major_formatter(lambda value, _pos: f"{value:,.0f}")
    for key, colour in (("avg_fare", _BLUE), ("avg_tip", _GREEN)):
        money.plot(
            days, [d[key] for d in kpi["daily"]], "o-", ms=3, color=colour, label=key, gid=key
        )
    money.set_ylabel("USD")
    money.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    speed.plot(
        days, [d["avg_speed_kmh"] for d in kpi["daily"]], "s-", ms=3, color=_ORANGE, gid="speed"
    )
    speed.set(ylabel="avg speed (km/h)", xlabel=f"day of {kpi['month']}")
    return _svg(fig)


def zone_label(zone: dict[str, Any]) -> str:
    """``Zone (Borough)``, or ``zone 161`` when dim.zone has no name for it."""
    if not zone.get("zone"):
        return f"zone {zone['zone_id']}"
    return f"{zone['zone']} ({zone['borough']})" if zone.get("borough") else zone["zone"]


def _text(label: str) -> str:
    return label.replace("$", r"\$")  # matplotlib reads text between two $ as mathematics


def _svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :].strip()
