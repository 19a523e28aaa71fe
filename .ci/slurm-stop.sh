#!/usr/bin/env bash
# Stop the test cluster started by .ci/slurm-setup.sh (as root).
#
#   .ci/slurm-stop.sh               # slurmd, slurmctld, slurmdbd, MariaDB, munged
#   .ci/slurm-stop.sh --slurm-only  # slurmd and slurmctld (setup uses it after a config change)
#
# Only the daemons named by the pid files in $CLUSTERD_SLURM_DIR are signalled.
set -euo pipefail

DIR=${CLUSTERD_SLURM_DIR:-/tmp/clusterd-slurm}
ALL=1
[ "${1:-}" = "--slurm-only" ] && ALL=0

stop() {
    # stop PIDFILE: SIGTERM the process, wait up to 10 s for it to go
    local pidfile=$1 pid
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
    kill "$pid"
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
        sleep 0.2
    done
    echo "slurm-stop: $pidfile ($pid) ignored SIGTERM; sending SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

stop "$DIR/slurmd.pid"
stop "$DIR/slurmctld.pid"
if [ "$ALL" = 1 ]; then
    stop "$DIR/slurmdbd.pid"
    stop "$DIR/mariadb/mariadb.pid"
    stop /run/munge/munged.pid
fi
