"""Stand-in HTCondor commands over the shared engine (``tests/standins/engine.py``):
``condor_submit`` (``submit``), ``condor_q``/``condor_history`` (``query``),
``condor_rm``/``condor_release``/``condor_hold``/``condor_version`` (``control``), the
user event log writer (``events``) and a test fixture (``fixture``). See README.md."""

#: command name -> "module:function(argv) -> exit status", for ``tests.standins.shims``
COMMANDS = {
    "condor_submit": "tests.standins.htcondor.submit:main",
    "condor_q": "tests.standins.htcondor.query:condor_q",
    "condor_history": "tests.standins.htcondor.query:condor_history",
    "condor_rm": "tests.standins.htcondor.control:condor_rm",
    "condor_release": "tests.standins.htcondor.control:condor_release",
    "condor_hold": "tests.standins.htcondor.control:condor_hold",
    "condor_version": "tests.standins.htcondor.control:condor_version",
}
