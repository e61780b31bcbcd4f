"""The README's CIFAR-10 table is reproducible from the committed run files alone."""

from pathlib import Path

from interspace_pruning.report import ip_vs_sp_table
from interspace_pruning.report.collect import collect_runs

ROOT = Path(__file__).parents[2]
RUNS = ROOT / "docs" / "results" / "cifar10_resnet20_cpu" / "runs"
SECTION = "### CIFAR-10, ResNet-20"


def _readme_rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("<details>")]  # the smoke-test table below is older
    return [
        line
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| method |")
    ]


def test_readme_cifar10_rows_are_what_the_report_makes_of_the_committed_runs():
    records, _ = collect_runs(RUNS)
    made = ip_vs_sp_table([(r.config, r.summary) for r in records], min_seeds=3).splitlines()
    rows = _readme_rows()
    assert rows, "the README's CIFAR-10 section has no table"
    missing = [row for row in rows if row not in made]
    assert not missing, f"not what `interspace report --min-seeds 3` gives: {missing}"
