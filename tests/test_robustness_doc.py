"""Issue 8: ``docs/robustness.md`` has its count at the top, and every case in it names a test
that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "robustness.md"


def _rows() -> list[list[str]]:
    rows = []
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].isdigit():
            rows.append(cells)
    return rows


def test_the_count_at_the_top_is_the_number_of_cases():
    head = PAGE.read_text(encoding="utf-8").split("\n\n", 2)[1]
    tried, handled = map(int, re.search(r"Cases tried: (\d+)\. Handled as documented: (\d+)", head).groups())
    rows = _rows()
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    assert tried == len(rows) and handled == tried


def test_every_case_names_a_test_that_exists():
    for number, case, what, test in _rows():
        found = re.fullmatch(r"`(tests/[\w/]+\.py)::(test_\w+)`", test)
        assert found, f"case {number} ({case}): no test named"
        path, name = found.groups()
        assert re.search(rf"^def {name}\(", (ROOT / path).read_text(encoding="utf-8"), re.M), \
            f"case {number}: {path} has no {name}"
        assert what, f"case {number}: what mner does is not said"
