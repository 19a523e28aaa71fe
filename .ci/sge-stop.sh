#!/usr/bin/env bash
# Stop the Grid Engine cell started by .ci/sge-setup.sh (as root).
#
#   .ci/sge-stop.sh               # sge_execd, then sge_qmaster
#   .ci/sge-stop.sh --execd-only  # sge_execd (setup uses it after a configuration change)
#
# Only processes named exactly sge_execd / sge_qmaster are signalled, one pid at a time.
set -euo pipefail

ALL=1
[ "${1:-}" = "--execd-only" ] && ALL=0

stop() {
    # stop NAME: SIGTERM each process named NAME, wait up to 10 s for it to go
    local name=$1 pid
    for pid in $(pgrep -x "$name" || true); do
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || continue 2
            sleep 0.2
        done
        echo "sge-stop: $name ($pid) ignored SIGTERM; sending SIGKILL" >&2
        kill -9 "$pid" 2>/dev/null || true
    done
}

stop sge_execd
[ "$ALL" = 1 ] && stop sge_qmaster
exit 0
