"""Every file name of the on-node contract, in one place (docs/runtime.md "Files").

The daemon writes some, the driver some, the runner and the trial the rest; each side
imports the names from here so that a rename cannot leave one side behind.
"""

from __future__ import annotations

# -- the trial dir: <output_dir>/<index>/, kept across attempts ------------------------------

#: the trial's parameters, written by the runner before the command starts
PARAMS = "params.json"
#: the trial's checkpoints; the newest is recorded in ``checkpoints/LATEST.json``
CHECKPOINTS = "checkpoints"
#: in CHECKPOINTS: the newest checkpoint (path, step, attempt), replaced atomically
LATEST = "LATEST.json"
#: the attempt dir's name for attempt ``n`` is ATTEMPT_PREFIX + str(n)
ATTEMPT_PREFIX = "attempt-"

# -- the attempt dir: <output_dir>/<index>/attempt-<n>/ --------------------------------------

#: written by the daemon before submit (0600): what the runner runs (node/launch.py)
LAUNCH = "launch.json"
#: the driver's write-ahead record of the submission (drivers/jobfile.py)
JOB = "job.json"
#: the local driver's own diagnostics for this attempt
DRIVER_LOG = "driver.log"
#: the runner's claim on the attempt (created O_EXCL) and its diagnostics
RUNNER_LOG = "runner.log"
#: written by the runner when the command started: its pid, process group, start time
RUNNER_JSON = "runner.json"
#: written by the runner at the end (node/status.py): the attempt's result
STATUS = "status.json"
#: the command's output
STDOUT = "stdout"
STDERR = "stderr"
#: the trial's reports, one JSON object a line (node/events.py)
EVENTS = "events.jsonl"
#: created by the daemon when a stop rule ends the trial early (``trial.should_stop``)
STOP = "STOP"
#: created by the runner when the trial should checkpoint (``trial.time_to_checkpoint``)
CHECKPOINT_REQUESTED = "CHECKPOINT_REQUESTED"
#: pids of the trial's processes that handle the resume signal, one a line (appended)
RESUME_HANDLER = "RESUME_HANDLER"
#: Slurm packing: the packed batch shell SIGTERMs the runner of an attempt holding it
CANCEL = "CANCEL"
#: Slurm: written by the batch script as an attempt starts (its job id)
SLURM_JOB_ID = "slurm_job_id"
#: Slurm: the attempt's job was requeued, which ends the attempt
REQUEUED = "requeued"

#: files a started attempt leaves in its dir: their presence means the dir was used, and
#: a runner that finds one does not run (an attempt runs once)
RUN_FILES = frozenset({RUNNER_JSON, RUNNER_LOG, EVENTS, STATUS, STDOUT, STDERR})
#: what an attempt dir written but never started may hold (temp files start with ".")
UNSTARTED_FILES = frozenset({LAUNCH, JOB, DRIVER_LOG})
