"""clusterd: run ML hyperparameter sweeps on clusters without losing a trial.

Importing the package is free of side effects and heavy dependencies: the trial
API (``from clusterd import trial``) and the CLI must start fast inside user jobs.
"""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1

__all__ = ["PROTOCOL_VERSION", "__version__"]
