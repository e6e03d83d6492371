import re

from chillflow.report.render import render_report

ZONE = "Midtown <Center> & Co"


def figures(**changes):
    heat = [[0] * 24 for _ in range(31)]
    heat[0][8], heat[1][17] = 4, 2
    day = {"trips": 4, "revenue": 80.0, "avg_fare": 15.0, "avg_tip": 2.0, "avg_speed_kmh": 20.0}
    return {
        "generated_at": "2025-02-01T06:00:00+00:00",
        "months": ["2025-01"],
        "quality": [
            {
                "service": "yellow",
                "month": "2025-01",
                "run_id": "abc123",
                "finished_at": "2025-02-01 05:00:00",
                "rows_in": 1000,
                "curated": 990,
                "quarantined": 10,
                "retention_pct": 99.0,
                "rules": [
                    {
                        "rule": "fare_ok",
                        "description": "Fares <b>& tips</b>",
                        "action": "quarantine",
                        "status": "quarantined",
                        "evaluated": 1000,
                        "failed": 10,
                        "failure_rate": 0.01,
                        "max_failure_rate": 0.2,
                        "predicate": "fare_amount >= 0 AND tip < 1e6",
                    },
                    {
                        "rule": "pax",
                        "description": "",
                        "action": "warn",
                        "status": "passed",
                        "evaluated": 1000,
                        "failed": 0,
                        "failure_rate": 0.0,
                        "max_failure_rate": None,
                        "predicate": "passenger_count <> 99",
                    },
                ],  # fmt: skip
                "examples": [
                    {
                        "rule": "fare_ok",
                        "pickup_ts": "2025-01-03 10:00:00",
                        "total_amount": -5.0,
                        "failed_rules": ["fare_ok", "pax"],
                        "source_row": 7,
                    },
                ],  # fmt: skip
            }
        ],
        "kpis": [
            {
                "month": "2025-01",
                "trips": 6,
                "revenue": 120.5,
                "by_day_hour": heat,
                "daily": [{"day": 1, **day}, {"day": 2, **day, "trips": 2, "revenue": 40.5}],
                "top_zones": [
                    {
                        "zone_id": 161,
                        "zone": ZONE,
                        "borough": "Manhattan",
                        "trips": 4,
                        "revenue": 80.0,
                    },
                    {
                        "zone_id": 7,
                        "zone": "Cash $ and $ carry",
                        "borough": None,
                        "trips": 2,
                        "revenue": 40.5,
                    },
                ],  # fmt: skip
            }
        ],
        "runs": [
            {
                "job": "curate",
                "period": "yellow/2025-01",
                "status": "failed",
                "attempt": 2,
                "started_at": "2025-02-01 05:00:00",
                "duration_sec": 3.5,
                "rows_read": None,
                "error": "SchemaError: <missing> column",
            },
        ],  # fmt: skip
        "zones_loaded": True,
        "database_error": None,
        "tables": [
            {"table": "kpis", "version": None, "location": "/lake/marts/zone_hourly_kpis"},
            {
                "table": "curated",
                "version": 3,
                "operation": "WRITE",
                "files": 4,
                "bytes": 12345,
                "partitioned_by": ["service", "month"],
                "location": "/lake/curated/trips",
            },
        ],  # fmt: skip
    } | changes


def charts(page):
    """(id, caption, svg) of each chart figure, in page order."""
    return re.findall(
        r'<figure class="chart" id="([^"]+)">'
        r"<figcaption>([^<]+)</figcaption>(<svg.*?</svg>)</figure>",
        page,
        flags=re.DOTALL,
    )


def test_every_section_and_chart_is_on_the_page():
    page = render_report(figures())

    for section in ("Data quality", "KPIs", "Runs", "Delta tables"):
        assert f"<h2>{section}</h2>" in page
    found = charts(page)
    assert [(chart_id, caption) for chart_id, caption, _ in found] == [
        ("chart-quality", "Retention and rule failure rates by month"),
        ("chart-heatmap-2025-01", "Trips by hour of day and day of month, 2025-01"),
        ("chart-zones-2025-01", "Busiest pickup zones, 2025-01"),
        ("chart-daily-2025-01", "Revenue, average fare, tip and speed by day, 2025-01"),
    ]
    svgs = {chart_id: svg for chart_id, _, svg in found}
    assert (
        'id="retention"' in svgs["chart-quality"] and 'id="rule-fare_ok"' in svgs["chart-quality"]
    )
    assert 'id="rule-pax"' not in svgs["chart-quality"]  # no failures, no line
    assert 'id="heatmap"' in svgs["chart-heatmap-2025-01"]
    assert re.findall(r'id="(bar-\d+)"', svgs["chart-zones-2025-01"]) == ["bar-0", "bar-1"]
    assert re.findall(r'id="(day-\d+)"', svgs["chart-daily-2025-01"]) == ["day-1", "day-2"]
    assert "1,000 rows in, 990 curated, 10 quarantined: retention 99.00 %" in page
    assert '<td class="n">1.00 %</td><td class="n">20.00 %</td>' in page  # rate and limit
    assert '<td>fare_ok, pax</td><td class="n">7</td>' in page  # an example row
    assert '<span class="badge failed">failed</span>' in page


def test_text_from_the_data_is_escaped_everywhere():
    page = render_report(figures())

    assert "Fares &lt;b&gt;&amp; tips&lt;/b&gt;" in page and "<b>& tips" not in page
    assert "Midtown &lt;Center&gt; &amp; Co" in page and "<Center>" not in page
    assert "SchemaError: &lt;missing&gt; column" in page and "<missing>" not in page
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", charts(page)[2][2])
    assert "Midtown &lt;Center&gt; &amp; Co (Manhattan)" in labels
    assert "Cash $ and $ carry" in labels  # not read as mathematics


def test_the_page_fetches_nothing_and_runs_no_script():
    page = render_report(figures())

    assert "<script" not in page.lower()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    links = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert links and all(link.startswith(("#", "data:image/png")) for link in links)
    assert all(url.startswith("#") for url in re.findall(r"url\(([^)]*)\)", page))
    assert "@import" not in page


def test_missing_data_is_explained_instead_of_charted():
    unnamed = figures()["kpis"][0] | {
        "top_zones": [{"zone_id": 161, "zone": None, "borough": None, "trips": 4, "revenue": 1.0}]
    }
    page = render_report(figures(kpis=[unnamed], zones_loaded=False, database_error="refused"))

    assert "chillflow db init --zones taxi_zone_lookup.csv" in page
    assert "zone 161" in re.findall(r"<text[^>]*>([^<]*)</text>", charts(page)[2][2])
    assert "No runs or zone names, PostgreSQL did not answer: refused" in page

    empty = render_report(figures(quality=[], kpis=[], runs=[], months=[]))

    assert charts(empty) == []
    assert "No data-quality metrics for these months" in empty
    assert "chillflow aggregate run --full-refresh" in empty
    assert "No runs recorded in ops.job_run yet." in empty
