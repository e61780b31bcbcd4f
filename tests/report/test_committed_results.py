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


# The converged section's length table: IP − SP per sparse cell and length, as the report's
# length curve gives it from the committed runs. Every IP − SP on the page must be what the
# runs give; a length with fewer than 3 pairs reads "queued". A length that the campaign
# completes after the page was written may still read "queued": the campaign commits runs
# up to a machine's last minutes, and a page one session behind is not wrong.
LENGTH_SECTION = "## CIFAR-10 at convergence and the training-length curve"
LENGTH_RUNS = "docs/results/cifar10_resnet20_converged/runs"


def _page_length_cells() -> dict[tuple[str, str, int], str]:
    """``(method, sparsity, epochs) -> cell`` of the section's first table: its header names
    the lengths (``| method | sparsity | 4 epochs | ...``); the dense row is left out."""
    text = PAGE.read_text()
    lines = [line.strip() for line in text[text.index(LENGTH_SECTION) :].splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("| method |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    lengths = [int(c.split()[0]) for c in header[2:]]
    cells = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        row = [c.strip() for c in line.strip("|").split("|")]
        if row[0].lower() == "dense":
            continue
        for epochs, cell in zip(lengths, row[2:], strict=True):
            cells[(row[0].lower(), row[1], epochs)] = cell
    return cells


def test_results_page_length_curve_is_what_the_committed_runs_give():
    from interspace_pruning.experiments.stats import fmt_ci, fmt_p
    from interspace_pruning.report.tables import length_curve

    records, _ = collect_runs(ROOT / LENGTH_RUNS)
    curve = length_curve([(r.config, r.summary) for r in records], min_seeds=3)
    made = {}
    for (method, sparsity), points in curve.items():
        for epochs, test in points:
            p = fmt_p(test.p)
            made[(method, f"{sparsity:.0%}", epochs)] = (
                f"{fmt_ci(test)}, p {p if p.startswith('<') else '= ' + p}"
            )
    page = {k: v.replace("−", "-") for k, v in _page_length_cells().items()}
    regenerate = (
        f"{LENGTH_SECTION!r}: its length table is not what "
        f"`interspace report {LENGTH_RUNS} --min-seeds 3` gives now; update it"
    )
    numbers = {k: v for k, v in page.items() if v != "queued"}
    assert made and numbers, "no length curve in the committed runs or on the page"
    for key, cell in numbers.items():
        assert made.get(key) == cell, f"{regenerate}: {key} reads {cell!r}, the runs give " + (
            repr(made[key]) if key in made else "no point (fewer than 3 pairs)"
        )
    unlisted = [k for k in made if k not in page]
    assert unlisted == [], f"{regenerate}: no cell for {unlisted}"
