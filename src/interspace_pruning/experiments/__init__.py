"""Experiments: run configurations, single runs and the SP-vs-IP comparison."""

from .compare import Comparison, compare
from .config import DataConfig, ModelConfig, PruneConfig, RunConfig
from .run import RunResult, load_data, prepare_run, run

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
