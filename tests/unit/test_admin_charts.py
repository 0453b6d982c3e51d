"""Chart policy without I/O: 1-2-5 y ticks, evenly spaced x labels, per-bucket tooltips, readable text size."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from admin_flask.charts import FONT_SIZE, WIDTH, Series, fmt, line_chart, x_label_indexes, y_ticks
from admin_flask.queries import buckets


@pytest.mark.parametrize(
    ("peak", "expected"),
    [
        (0, [0, 1]),
        (0.4, [0, 1]),
        (3, [0, 1, 2, 3]),
        (7, [0, 2, 4, 6, 8]),
        (45, [0, 20, 40, 60]),
        (99, [0, 50, 100]),
        (1234, [0, 500, 1000, 1500]),
        (999_999, [0, 500_000, 1_000_000]),
    ],
)
def test_y_ticks_are_1_2_5_steps_covering_the_peak(peak: float, expected: list[float]) -> None:
    ticks = y_ticks(peak)
    assert ticks == expected and ticks[-1] >= peak
    assert int(str(int(ticks[1])).rstrip("0")) in (1, 2, 5)


def test_axis_numbers_are_short() -> None:
    assert [fmt(v) for v in (0, 950, 1000, 1500, 2_000_000, 0.5)] == ["0", "950", "1k", "1.5k", "2M", "0.5"]


def test_x_labels_are_spread_and_keep_both_ends() -> None:
    assert x_label_indexes(4) == [0, 1, 2, 3]
    for count in (24, 28, 30):
        picked = x_label_indexes(count)
        assert picked[0] == 0 and picked[-1] == count - 1 and len(picked) <= 5


def test_every_bucket_has_a_focusable_tooltip_and_text_is_readable() -> None:
    grid = buckets(dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC), dt.timedelta(days=30), 30)
    assert len(grid.labels) == 30 and grid.labels[0].startswith("Nov")
    svg = str(line_chart([Series("team-a", [float(i) for i in range(30)])], grid.labels, title="Requests"))
    tips = re.findall(r'<rect class="hit"[^>]*tabindex="0"[^>]*data-tip="([^"]+)"', svg)
    assert len(tips) == 30 and tips[3].endswith("team-a: 3")
    assert f'font-size="{FONT_SIZE}"' in svg and FONT_SIZE >= 12 and f'width="{WIDTH}"' in svg
    # Sub-day buckets over a week name the hour too, so neighbouring buckets are told apart.
    week = buckets(dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC), dt.timedelta(days=7), 28)
    assert len(set(week.labels)) == 28
