#!/usr/bin/env bash
# Start a single-node Slurm cluster on this host (Debian 12, slurm-wlm 22.05), as root.
#
#   sudo .ci/slurm-setup.sh            # install if needed, configure, start, wait for idle
#   sudo .ci/slurm-setup.sh --no-accounting   # skip MariaDB + slurmdbd (sacct then disabled)
#   sudo .ci/slurm-stop.sh             # stop the daemons again
#
# CI may run it before the tests; the session fixture of tests/drivers/test_slurm_real.py
# always does. It is idempotent: when the cluster is up with this very configuration it
# returns in ~0.1 s; a changed configuration restarts slurmctld and slurmd.
#
# Choices (measured on a 2-CPU Debian 12 container, from a bare system, cold apt cache):
# * Accounting is ON by default: MariaDB + slurmdbd make `sacct` report the final
#   state of jobs that left slurmctld's memory (MinJobAge), e.g. "CANCELLED by 0",
#   "FAILED" with exit code 3:0, TIMEOUT, NODE_FAIL. Without slurmdbd, `sacct` only
#   says accounting is disabled (jobcomp/filetxt feeds no `sacct`). Cost: install +
#   start takes ~10 s instead of ~6 s (the start alone: ~2 s). The driver works without
#   it too: `squeue --states=all` shows final states for MinJobAge (300 s) after a job
#   ends, which a daemon polling every 30 s sees.
# * AccountingStorageEnforce=associations,limits,qos, as on production clusters: a user
#   needs an association to submit (root has one; so does $SUDO_USER, added here), and
#   MaxSubmitJobs/QOS limits are real (the driver's limit tests set some, then remove them).
# * No systemd, no cgroups: proctrack/linuxproc + task/none; the daemons run as root
#   (SlurmUser=root, SlurmdUser=root), so test jobs run as root.
# * batch_sched_delay=0 and sched_interval=1 cut submit-to-start latency to ~1 s;
#   KillWait=5 so a job past --time ends TIMEOUT quickly.
# * State, logs and pid files live in $CLUSTERD_SLURM_DIR (default /tmp/clusterd-slurm);
#   the config is /etc/slurm/slurm.conf so every client finds it without SLURM_CONF.
#
# Exit status: 0 the node is idle; 3 the packages cannot be installed (not root, no
# apt-get, apt-get failed: the tests skip); 1 anything else (the tests fail).
#
# Environment: CLUSTERD_SLURM_ACCOUNTING=0 (same as --no-accounting), CLUSTERD_SLURM_DIR,
# CLUSTERD_SLURM_MAX_ARRAY (MaxArraySize, default 1001),
# CLUSTERD_SLURM_TIMEOUT (seconds to wait for the node, default 60).
set -euo pipefail

ACCOUNTING=${CLUSTERD_SLURM_ACCOUNTING:-1}
for arg in "$@"; do
    case "$arg" in
        --no-accounting) ACCOUNTING=0 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "slurm-setup: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

DIR=${CLUSTERD_SLURM_DIR:-/tmp/clusterd-slurm}
MAX_ARRAY=${CLUSTERD_SLURM_MAX_ARRAY:-1001}
TIMEOUT=${CLUSTERD_SLURM_TIMEOUT:-60}
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
HOST=$(hostname -s)

die() { echo "slurm-setup: $*" >&2; exit 1; }
cannot_install() { echo "slurm-setup: cannot install: $*" >&2; exit 3; }
log() { echo "slurm-setup: $*" >&2; }

node_idle() {
    # true once slurmctld answers and our node can take jobs
    local state
    state=$(timeout 5 sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null) || return 1
    case "$state" in idle*|mixed*|allocated*|completing*) return 0 ;; *) return 1 ;; esac
}

running() {
    # running PIDFILE: the pid in PIDFILE names a live process
    local pid
    [ -s "$1" ] && pid=$(cat "$1") && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

ctld_listening() {
    # a cheap probe first: with no slurmctld, sinfo retries for ~9 s before failing
    timeout 1 bash -c '</dev/tcp/127.0.0.1/6817' 2>/dev/null
}

accounting_ok() {
    [ "$ACCOUNTING" = 0 ] || timeout 5 sacct -n -X -S now >/dev/null 2>&1
}

wait_for() {
    # wait_for SECONDS WHAT COMMAND...: retry COMMAND until it succeeds or time runs out
    local seconds=$1 what=$2 deadline
    shift 2
    deadline=$(($(date +%s) + seconds))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
    log "$what"
}

# --------------------------------------------------------------------------- config
cpus=$(nproc)
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
if [ "$ACCOUNTING" = 1 ]; then
    storage="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations,limits,qos"
else
    storage="AccountingStorageType=accounting_storage/none"
fi

new_conf=$(cat <<EOF
# Written by clusterd's .ci/slurm-setup.sh: a one-node test cluster on $HOST.
ClusterName=clusterd
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=1,sched_min_interval=0
$storage
JobCompType=jobcomp/none
MaxArraySize=$MAX_ARRAY
MaxJobCount=20000
MinJobAge=300
KillWait=5
InactiveLimit=0
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
DefMemPerCPU=$((mem_mb / cpus))
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$new_conf" ] && ctld_listening && node_idle \
    && accounting_ok; then
    log "Slurm already up on $HOST"
    exit 0
fi

# --------------------------------------------------------------------------- packages
[ "$(id -u)" = 0 ] || cannot_install "must run as root (it installs packages and starts daemons)"
install_packages() {
    local need=() pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    [ "${#need[@]}" -eq 0 ] && return 0
    command -v apt-get >/dev/null || cannot_install "apt-get not found: install ${need[*]} by hand"
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d: keep the packages' init scripts from starting daemons we start below
    local policy=/usr/sbin/policy-rc.d created=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created=1
    fi
    local rc=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } \
        >"$DIR/apt.log" 2>&1 || rc=$?
    [ "$created" = 1 ] && rm -f "$policy"
    [ "$rc" = 0 ] || cannot_install "apt-get install ${need[*]} failed (exit $rc):" \
        "$(tail -n 3 "$DIR/apt.log" | tr '\n' ' ')"
}

mkdir -p "$DIR"
packages=(slurm-wlm munge)
[ "$ACCOUNTING" = 1 ] && packages+=(slurmdbd mariadb-server)
install_packages "${packages[@]}"

mkdir -p "$DIR/ctld" "$DIR/d" /etc/slurm
conf_changed=0
if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$new_conf" ]; then
    printf '%s\n' "$new_conf" >"$CONF"
    conf_changed=1
fi

# --------------------------------------------------------------------------- munge
mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! running /run/munge/munged.pid; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged || die "munged did not start; see /var/log/munge/munged.log"
fi

# --------------------------------------------------------------------------- accounting
if [ "$ACCOUNTING" = 1 ]; then
    # MariaDB runs as mysql: its pid and log go to a directory that user owns
    mkdir -p /run/mysqld "$DIR/mariadb" && chown mysql:mysql /run/mysqld "$DIR/mariadb"
    if ! mariadb-admin ping >/dev/null 2>&1; then
        log "starting MariaDB"
        if [ ! -d /var/lib/mysql/mysql ]; then
            mariadb-install-db --user=mysql >"$DIR/mariadb-install.log" 2>&1 \
                || die "mariadb-install-db failed; see $DIR/mariadb-install.log"
        fi
        setsid mariadbd --user=mysql --skip-networking --pid-file="$DIR/mariadb/mariadb.pid" \
            --log-error="$DIR/mariadb/mariadb.log" </dev/null >/dev/null 2>&1 &
        wait_for "$TIMEOUT" "MariaDB is up" mariadb-admin ping \
            || die "MariaDB did not answer within $TIMEOUT s; see $DIR/mariadb/mariadb.log"
    fi
    cat >"$DBD_CONF" <<EOF
# Written by clusterd's .ci/slurm-setup.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
    chmod 0600 "$DBD_CONF"
    if ! running "$DIR/slurmdbd.pid"; then
        log "starting slurmdbd"
        slurmdbd || die "slurmdbd did not start; see $DIR/slurmdbd.log"
    fi
    wait_for "$TIMEOUT" "slurmdbd is up" sacctmgr -n list cluster \
        || die "slurmdbd did not answer within $TIMEOUT s; see $DIR/slurmdbd.log"
    if [ -z "$(sacctmgr -n -P list cluster format=cluster where cluster=clusterd)" ]; then
        sacctmgr -i add cluster clusterd >/dev/null || die "sacctmgr could not add the cluster"
    fi
    # limits are enforced, so whoever submits needs an association (root gets one above)
    for user in ${SUDO_USER:-}; do
        if [ "$user" != root ] && [ -z "$(sacctmgr -n -P show user "$user" format=user)" ]; then
            sacctmgr -i add user "$user" account=root >/dev/null \
                || die "sacctmgr could not add user $user"
        fi
    done
fi

# --------------------------------------------------------------------------- slurm
if [ "$conf_changed" = 1 ]; then
    log "slurm.conf changed: restarting"
    "$(dirname "$0")/slurm-stop.sh" --slurm-only
fi
if ! running "$DIR/slurmctld.pid"; then
    log "starting slurmctld"
    slurmctld || die "slurmctld did not start; see $DIR/slurmctld.log"
fi
if ! running "$DIR/slurmd.pid"; then
    log "starting slurmd"
    slurmd || die "slurmd did not start; see $DIR/slurmd.log"
fi

if ! wait_for "$TIMEOUT" "node $HOST is idle" node_idle; then
    # a node left DOWN/DRAIN by an earlier run: bring it back once
    scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
    wait_for 10 "node $HOST is idle" node_idle || {
        sinfo -N -l >&2 || true
        die "node $HOST is not idle after $TIMEOUT s; see $DIR/slurmctld.log and $DIR/slurmd.log"
    }
fi
