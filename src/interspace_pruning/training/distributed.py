"""Moved to :mod:`interspace_pruning.foundations.distributed` (pruning schedules use it too,
and they sit below training). This name stays an alias of that very module, so that
``interspace_pruning.training.distributed`` and its attributes are the same objects."""

import sys

from ..foundations import distributed as _distributed

sys.modules[__name__] = _distributed
