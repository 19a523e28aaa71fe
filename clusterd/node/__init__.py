"""The on-node contract: what the daemon, the drivers and the runner agree on in a
trial's directories (file names, atomic writes, launch.json, status.json, placeholders,
the events format).

Stdlib only and import-light: the runner (``python -I -S``) and ``clusterd.trial`` run in
the user's job environment and import these modules, so this ``__init__`` imports
nothing; import the submodules themselves (``from clusterd.node import names``).
"""
