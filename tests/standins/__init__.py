"""Stand-in batch schedulers for tests: a shared engine (``engine``), the per-run wrapper
(``run_task``), command shims (``shims``) and per-scheduler frontends (``pbs``,
``htcondor``). See README.md."""
