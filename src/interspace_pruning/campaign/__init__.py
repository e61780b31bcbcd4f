"""A campaign: a queue of experiment tables that outlives its machine.

Preemptible machines give a job a few hours, then stop everything it runs; the next job may
run on another kind of machine. A campaign keeps the tables moving anyway:

- :mod:`.queue` reads the queue file: recipes (sweep files) in priority order, each run
  of each table once, with the group of runs that must train on one kind of machine (the
  SP and IP runs of a pair, the fp32 and bf16 runs of a precision check);
- :mod:`.estimate` says how long a run takes on this machine, from training steps timed
  here and corrected by how long this machine's finished runs really took;
- :mod:`.gitsync` commits each finished run's small files, and an unfinished run's
  checkpoint at a stop (one file per unfinished run, removed when it finishes);
- :mod:`.priority` makes the workers yield the cores to the machine's other sessions;
- :mod:`.runner` is the loop: workers take the highest-priority run that fits before the
  deadline, whose precision is fast here and whose group has not trained elsewhere, and
  checkpoint it if the deadline comes first.

``interspace campaign QUEUE.yaml --deadline 170m --background`` starts it.
"""

from .estimate import Estimator
from .queue import Queue, QueuedRun, load_queue
from .runner import CampaignOptions, run_campaign, status_lines

__all__ = [
    "CampaignOptions",
    "Estimator",
    "Queue",
    "QueuedRun",
    "load_queue",
    "run_campaign",
    "status_lines",
]
