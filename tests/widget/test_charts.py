"""The scorecard charts (widget/charts.js), drawn in Chromium from the served script."""

from __future__ import annotations

from typing import Any

import pytest

from tests.widget.conftest import Site

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(60)]


async def test_series_with_the_same_values_all_stay_in_sight(site: Site, new_page: Any) -> None:
    page = await new_page()
    await page.set_content("<!doctype html><body></body>")
    await page.add_script_tag(url=site.base + "/static/common.js")
    await page.add_script_tag(url=site.base + "/static/charts.js")
    marks = await page.evaluate(
        """() => {
          const series = ['blame', 'dismissive', 'dont_know', 'not_my_job'].map(
            (name, k) => ({name, values: [33.3, k === 0 ? 50 : 33.3]}));
          const chart = TLCharts.line(['2026-12-04', '2026-12-05'], series, {title: 'Flags'});
          document.body.append(chart);
          return [...chart.querySelectorAll('circle')].map(c => ({
            at: c.getAttribute('cx') + ',' + c.getAttribute('cy'),
            r: Number(c.getAttribute('r')),
            fill: c.getAttribute('fill'),
            stroke: c.getAttribute('stroke'),
            title: c.querySelector('title').textContent,
          }));
        }"""
    )
    assert len(marks) == 8
    first_day = [m for m in marks if m["title"].endswith("4 Dec 2026: 33.3")]
    # Four categories at 33.3 on one day: a dot and three wider rings, one per colour.
    assert len({m["at"] for m in first_day}) == 1
    assert sorted(m["r"] for m in first_day) == [2.5, 5, 7.5, 10]
    rings = [m for m in first_day if m["r"] > 2.5]
    assert {m["fill"] for m in rings} == {"none"} and len({m["stroke"] for m in rings}) == 3
    # On the second day blame stands apart at 50: a dot of its own; the other three share.
    second_day = sorted(m["r"] for m in marks if "5 Dec 2026" in m["title"])
    assert second_day == [2.5, 2.5, 5, 7.5]
