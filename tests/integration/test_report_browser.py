"""The report page in a real browser: Debian's headless Chromium, driven by Playwright."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from chillflow.report import write_report

pytestmark = [pytest.mark.postgres, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def coloured_pixels(png: bytes) -> tuple[int, int]:
    """Distinct colours, and pixels that are not grey (chart marks; axes and text are grey)."""
    from PIL import Image

    colours = Image.open(io.BytesIO(png)).convert("RGB").getcolors(maxcolors=1 << 24)
    return len(colours), sum(count for count, rgb in colours if max(rgb) - min(rgb) > 40)


def test_the_report_renders_offline_with_every_section_and_chart(
    spark, report_lake, browser, tmp_path
):
    path, figures = write_report(
        spark, report_lake, report_lake.database_url, out=tmp_path / "report.html"
    )
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requests, errors = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.route(re.compile(r"^(?!file:)"), lambda route: route.abort())
    page.goto(path.as_uri())
    page.screenshot(path=tmp_path / "report.png", full_page=True)

    assert requests == [path.as_uri()], "the page fetched something besides itself"
    assert errors == []
    assert page.title() == "ChillFlow report"
    assert page.locator("h2").all_inner_texts() == ["Data quality", "KPIs", "Runs", "Delta tables"]
    assert page.locator("section#quality h3").all_inner_texts() == [
        "yellow 2024-12",
        "yellow 2025-01",
    ]
    assert page.locator("figure.chart figcaption").all_inner_texts() == [
        "Retention and rule failure rates by month",
        "Trips by hour of day and day of month, 2025-01",
        "Busiest pickup zones, 2025-01",
        "Revenue, average fare, tip and speed by day, 2025-01",
    ]
    for chart in page.locator("figure.chart svg").all():
        box = chart.bounding_box()
        colours, marks = coloured_pixels(chart.screenshot())
        assert box["width"] > 900 and box["height"] > 150
        assert colours > 50 and marks > 0.01 * box["width"] * box["height"], (colours, marks)
    [kpi] = figures["kpis"]
    failing_rules = {r["rule"] for q in figures["quality"] for r in q["rules"] if r["failed"]}
    assert page.locator("#chart-quality g[id^=rule-]").count() == len(failing_rules) > 3
    assert page.locator("#chart-zones-2025-01 g[id^=bar-]").count() == 10
    assert page.locator("#chart-daily-2025-01 g[id^=day-]").count() == len(kpi["daily"]) == 31
    assert page.locator("#chart-heatmap-2025-01 image#heatmap").count() == 1

    busiest = kpi["top_zones"][0]
    zone_cells = page.locator("section#kpis table td").all_inner_texts()
    assert f"Zone {busiest['zone_id']} <&>" in zone_cells
    assert "SchemaError: <no zone ids> in the file" in page.locator("#runs").inner_text()
    assert page.locator("#runs .badge.failed").count() == 1
    assert page.locator("section#quality details").count() == 2
