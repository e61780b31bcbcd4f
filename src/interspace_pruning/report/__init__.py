"""Reports of runs and sweeps: Markdown tables and matplotlib plots."""

from .build import diagnostics_table, write_report
from .collect import RunRecord, collect_runs, config_from_dict, load_model
from .tables import ip_vs_sp_table

__all__ = [
    "RunRecord",
    "collect_runs",
    "config_from_dict",
    "diagnostics_table",
    "ip_vs_sp_table",
    "load_model",
    "write_report",
]
