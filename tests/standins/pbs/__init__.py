"""Stand-in PBS commands (``qsub``, ``qstat``, ``qdel``, ``qrls``) over the shared engine,
for PBS Pro / OpenPBS and Torque: see README.md for what is recorded and what is not."""
