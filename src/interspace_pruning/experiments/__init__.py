"""Experiments: run configurations, single runs and the SP-vs-IP comparison."""

from .compare import Comparison, compare
from .config import DataConfig, ModelConfig, PruneConfig, RunConfig
from .results import RunResult
from .run import prepare_run, run
from .run_setup import load_data

__all__ = [
    "Comparison",
    "DataConfig",
    "ModelConfig",
    "PruneConfig",
    "RunConfig",
    "RunResult",
    "compare",
    "load_data",
    "prepare_run",
    "run",
]
