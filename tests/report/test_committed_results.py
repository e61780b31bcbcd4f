"""The IP vs SP tables of the docs' Results page are reproducible from the committed run files.

When the campaign commits more runs of a table, its rows (and Holm's correction over them)
change: regenerate the section with the command in the failure message.
"""

from pathlib import Path

import pytest

from interspace_pruning.report import ip_vs_sp_table
from interspace_pruning.report.collect import collect_runs

ROOT = Path(__file__).parents[2]
PAGE = ROOT / "docs" / "results.md"

# (the section's heading, its runs, the fewest rows its table has)
TABLES = [
    ("## CIFAR-10, ResNet-20", "docs/results/cifar10_resnet20_cpu/runs", 20),
    ("## Fashion-MNIST, pruning at initialisation", "docs/results/fashion_mnist_pai/runs", 15),
    ("## Imagewoof / ImageNet ResNet-18", "docs/results/imagewoof_resnet18_64px/runs", 3),
]


def _first_table(lines: list[str]) -> list[str]:
    """The rows of the first markdown table in ``lines``, without its header (a table
    indented in a list item counts too)."""
    lines = [line.strip() for line in lines]
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [line for line in lines[start:end] if not line.startswith("| method |")]


def _page_rows(section: str) -> list[str]:
    """The rows of the first table after ``section`` (a section's later tables are older
    and made from other runs)."""
    text = PAGE.read_text()
    return _first_table(text[text.index(section) :].splitlines())


@pytest.mark.parametrize(
    ("section", "runs", "fewest"), TABLES, ids=["cifar10", "fashion-mnist", "imagewoof-64px"]
)
def test_results_page_rows_are_what_the_report_makes_of_the_committed_runs(section, runs, fewest):
    records, _ = collect_runs(ROOT / runs)
    report = ip_vs_sp_table([(r.config, r.summary) for r in records], min_seeds=3)
    made = _first_table(report.splitlines())
    rows = _page_rows(section)
    assert len(rows) >= fewest, f"the Results page's {section!r} section has no table"
    regenerate = (
        f"{section!r}: not what `interspace report {runs} --min-seeds 3` gives now; "
        "regenerate the section's table and its report folder"
    )
    assert [row for row in rows if row not in made] == [], regenerate
    assert [row for row in made if row not in rows] == [], regenerate
