"""The CIFAR-10 table of the docs' Results page is reproducible from the committed run files."""

from pathlib import Path

from interspace_pruning.report import ip_vs_sp_table
from interspace_pruning.report.collect import collect_runs

ROOT = Path(__file__).parents[2]
RUNS = ROOT / "docs" / "results" / "cifar10_resnet20_cpu" / "runs"
PAGE = ROOT / "docs" / "results.md"
SECTION = "## CIFAR-10, ResNet-20"


def _page_rows() -> list[str]:
    """The rows of the first table after the CIFAR-10 heading (the smoke-test table below
    it is older and made from other runs)."""
    text = PAGE.read_text()
    lines = text[text.index(SECTION) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [line for line in lines[start:end] if not line.startswith("| method |")]


def test_results_page_cifar10_rows_are_what_the_report_makes_of_the_committed_runs():
    records, _ = collect_runs(RUNS)
    made = ip_vs_sp_table([(r.config, r.summary) for r in records], min_seeds=3).splitlines()
    rows = _page_rows()
    assert len(rows) > 20, "the Results page's CIFAR-10 section has no table"
    missing = [row for row in rows if row not in made]
    assert not missing, f"not what `interspace report --min-seeds 3` gives: {missing}"
