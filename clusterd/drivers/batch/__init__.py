"""What every batch-scheduler driver shares (Slurm, HTCondor, PBS, Grid Engine).

One module per job, each usable on its own:

* ``commands``: scheduler commands with a timeout, the process group killed, errors
  with a hint (``SchedulerCommands``, ``run_command``, ``CommandRunner``);
* ``arrays``: alike attempts grouped into arrays, packed N to a task, chunked to the
  maximum array size, fitted to a submit ``Budget``;
* ``script``: the batch script (task-id dispatch, requeue guard, packed supervisor)
  in a scheduler's ``ScriptDialect``;
* ``records``: write-ahead job.json records, ``find`` by token, adoption of leftovers;
* ``slots``: packed attempts' job ids, phases and cancellation;
* ``cache``: time-limited answers (``TtlCache``);
* ``settings``: the fields every backend's array settings take from the attempt's
  resources (``resource_fields``), and a time limit as hours, minutes, seconds;
* ``driver``: ``BatchDriver``, the submit/cancel/find skeleton over all of the above,
  whose docstring lists what a backend supplies.
"""

from clusterd.drivers.batch.arrays import Budget, Task
from clusterd.drivers.batch.cache import TtlCache
from clusterd.drivers.batch.commands import CommandRunner, SchedulerCommands, run_command
from clusterd.drivers.batch.driver import BatchDriver, batch_options
from clusterd.drivers.batch.script import ScriptDialect, render_script
from clusterd.drivers.batch.slots import split_slot

__all__ = [
    "BatchDriver",
    "Budget",
    "CommandRunner",
    "SchedulerCommands",
    "ScriptDialect",
    "Task",
    "TtlCache",
    "batch_options",
    "render_script",
    "run_command",
    "split_slot",
]
