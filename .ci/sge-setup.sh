#!/usr/bin/env bash
# Start a single-host Grid Engine cell on this host (Debian 12, Son of Grid Engine 8.1.9), as root.
#
#   sudo .ci/sge-setup.sh     # install if needed, configure, start, wait for the exec host
#   sudo .ci/sge-stop.sh      # stop sge_execd and sge_qmaster again
#
# CI may run it before the tests; the session fixture `sge` (tests/drivers/sge/conftest.py)
# always does. It is idempotent: when the cell is up with this very configuration it
# returns in ~0.1 s; a changed configuration is applied with qconf and sge_execd restarted.
#
# What it takes (measured on a 2-CPU Debian 12 container; install ~7 s, start < 1 s):
# * debconf preseeding (shared/gridengineconfig, gridenginecell, gridenginemaster), so the
#   packages' postinst scripts create the cell in /var/lib/gridengine/default and the
#   spool in /var/spool/gridengine; a temporary policy-rc.d keeps their init scripts from
#   starting daemons (this script starts sge_qmaster and sge_execd directly: no systemd).
# * `<host> localhost` in $SGE_ROOT/default/common/host_aliases when the host name
#   resolves to 127.0.0.1 (containers): otherwise qmaster and execd disagree on the name.
# * min_uid/min_gid 0 (CI runs as root; the default 1000 puts root's jobs in error state);
#   execd reads them when it starts, so it is restarted after a change.
# * one queue all.q on this host with nproc + 2 slots, shell /bin/bash, pe_list smp
#   (pe smp: allocation_rule $pe_slots), a per-job consumable `gpu` complex (0 here) so
#   that `-l gpu=N` is a known resource, the host a submit and admin host.
# * schedule_interval 0:0:1, flush_submit_sec 1, flush_finish_sec 1: a job starts ~1 s
#   after qsub; accounting flush_time 1 s so `qacct -j` sees a job ~1 s after it ends;
#   load_report_time 5 s so the exec host is known soon after sge_execd starts; the
#   queue's notify 15 s: qdel of a `-notify` job (the driver's) sends SIGUSR2, SIGKILL 15 s on.
#
# Exit status: 0 the exec host is up; 3 the packages cannot be installed (not root, no
# apt-get, apt-get failed: the tests skip); 1 anything else (the tests fail).
#
# Environment: CLUSTERD_SGE_SLOTS (slots of all.q, default nproc + 2),
# CLUSTERD_SGE_TIMEOUT (seconds to wait for the daemons, default 60).
set -euo pipefail

for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "sge-setup: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
COMMON=$SGE_ROOT/$SGE_CELL/common
SPOOL=/var/spool/gridengine
HOST=$(hostname)
SLOTS=${CLUSTERD_SGE_SLOTS:-$(($(nproc) + 2))}
TIMEOUT=${CLUSTERD_SGE_TIMEOUT:-60}
STAMP=$SPOOL/clusterd-config
LOGDIR=/tmp/clusterd-sge
HERE=$(cd "$(dirname "$0")" && pwd)

die() { echo "sge-setup: $*" >&2; exit 1; }
cannot_install() { echo "sge-setup: cannot install: $*" >&2; exit 3; }
log() { echo "sge-setup: $*" >&2; }

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

qmaster_up() { timeout 5 qstat -u '*' >/dev/null 2>&1; }

execd_up() {
    # the exec host reports a load: sge_execd is registered with qmaster
    local load
    load=$(timeout 5 qhost -h "$HOST" 2>/dev/null | awk -v h="$HOST" '$1 == h {print $4}')
    [ -n "$load" ] && [ "$load" != "-" ]
}

pid_of() {
    # pid_of NAME: the pid of the running daemon NAME (exact process name), or nothing
    pgrep -x "$1" | head -n 1
}

# --------------------------------------------------------------------------- config
cpus=$(nproc)
read -r -d '' global_conf <<EOF || true
execd_spool_dir              $SPOOL/execd
mailer                       /bin/true
xterm                        /usr/bin/xterm
load_sensor                  none
prolog                       none
epilog                       none
shell_start_mode             posix_compliant
login_shells                 bash,sh,ksh,csh,tcsh
min_uid                      0
min_gid                      0
user_lists                   none
xuser_lists                  none
projects                     none
xprojects                    none
enforce_project              false
enforce_user                 auto
load_report_time             00:00:05
max_unheard                  00:05:00
reschedule_unknown           00:00:00
loglevel                     log_warning
administrator_mail           none
set_token_cmd                none
pag_cmd                      none
token_extend_time            none
shepherd_cmd                 none
qmaster_params               none
execd_params                 none
reporting_params             accounting=true reporting=false flush_time=00:00:01 joblog=false sharelog=00:00:00
finished_jobs                100
gid_range                    65400-65500
qlogin_command               builtin
qlogin_daemon                builtin
rlogin_command               builtin
rlogin_daemon                builtin
rsh_command                  builtin
rsh_daemon                   builtin
max_aj_instances             2000
max_aj_tasks                 75000
max_u_jobs                   0
max_jobs                     0
auto_user_oticket            0
auto_user_fshare             0
auto_user_default_project    none
auto_user_delete_time        86400
delegated_file_staging       false
reprioritize                 0
jsv_url                      none
jsv_allowed_mod              ac,h,i,e,o,j,M,N,p,w
EOF

read -r -d '' sched_conf <<EOF || true
algorithm                         default
schedule_interval                 0:0:1
maxujobs                          0
queue_sort_method                 load
job_load_adjustments              NONE
load_adjustment_decay_time        0:0:0
load_formula                      slots
schedd_job_info                   true
flush_submit_sec                  1
flush_finish_sec                  1
params                            none
reprioritize_interval             0:0:0
halftime                          168
usage_weight_list                 cpu=1.000000,mem=0.000000,io=0.000000
compensation_factor               5.000000
weight_user                       0.250000
weight_project                    0.250000
weight_department                 0.250000
weight_job                        0.250000
weight_tickets_functional         0
weight_tickets_share              0
share_override_tickets            TRUE
share_functional_shares           TRUE
max_functional_jobs_to_schedule   200
report_pjob_tickets               TRUE
max_pending_tasks_per_job         50
halflife_decay_list               none
policy_hierarchy                  OFS
weight_ticket                     0.500000
weight_waiting_time               0.278000
weight_deadline                   3600000.000000
weight_urgency                    0.500000
weight_priority                   0.000000
max_reservation                   0
default_duration                  INFINITY
EOF

read -r -d '' pe_conf <<EOF || true
pe_name            smp
slots              9999
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    \$pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF

read -r -d '' host_conf <<EOF || true
hostname              $HOST
load_scaling          NONE
complex_values        gpu=0
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
EOF

read -r -d '' queue_conf <<EOF || true
qname                 all.q
hostlist              $HOST
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               smp
rerun                 FALSE
slots                 $SLOTS
tmpdir                /tmp
shell                 /bin/bash
prolog                NONE
epilog                NONE
shell_start_mode      posix_compliant
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:15
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  INFINITY
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
EOF

gpu_complex="gpu                 gpu        INT       <=    YES         JOB        0        0"

config_id=$(printf '%s\n' "$HOST" "$global_conf" "$sched_conf" "$pe_conf" "$host_conf" \
    "$queue_conf" "$gpu_complex" | md5sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$config_id" ] && [ -n "$(pid_of sge_qmaster)" ] \
    && [ -n "$(pid_of sge_execd)" ] && qmaster_up && execd_up; then
    log "Grid Engine already up on $HOST"
    exit 0
fi

# --------------------------------------------------------------------------- packages
[ "$(id -u)" = 0 ] || cannot_install "must run as root (it installs packages and starts daemons)"
mkdir -p "$LOGDIR"
packages=(gridengine-master gridengine-exec gridengine-client)
need=()
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || cannot_install "apt-get not found: install ${need[*]} by hand"
    command -v debconf-set-selections >/dev/null || cannot_install "debconf-set-selections not found"
    if dpkg -s slurm-wlm-torque >/dev/null 2>&1; then
        cannot_install "slurm-wlm-torque is installed: its qsub/qstat conflict with gridengine-client"
    fi
    log "installing ${need[*]}"
    for pkg in gridengine-common "${packages[@]}"; do
        printf '%s shared/gridengineconfig boolean true\n' "$pkg"
        printf '%s shared/gridenginecell string %s\n' "$pkg" "$SGE_CELL"
        printf '%s shared/gridenginemaster string %s\n' "$pkg" "$HOST"
    done | debconf-set-selections || cannot_install "debconf-set-selections failed"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d: keep the packages' init scripts from starting daemons we start below
    policy=/usr/sbin/policy-rc.d created=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created=1
    fi
    rc=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } \
        >"$LOGDIR/apt.log" 2>&1 || rc=$?
    [ "$created" = 1 ] && rm -f "$policy"
    [ "$rc" = 0 ] || cannot_install "apt-get install ${need[*]} failed (exit $rc):" \
        "$(tail -n 3 "$LOGDIR/apt.log" | tr '\n' ' ')"
fi
[ -f "$COMMON/bootstrap" ] || die "$COMMON/bootstrap missing: the packages did not create the" \
    "cell (was shared/gridengineconfig answered false before? dpkg-reconfigure gridengine-common)"

# --------------------------------------------------------------------------- host names
# qmaster resolves every host name; where this host's name is 127.0.0.1 (a container)
# execd reports as "localhost" and is refused unless the two are aliases.
printf '%s\n' "$HOST" >"$COMMON/act_qmaster"
if getent hosts "$HOST" | awk '{print $1}' | grep -qx '127\.0\.0\.1'; then
    printf '%s localhost\n' "$HOST" >"$COMMON/host_aliases"
else
    rm -f "$COMMON/host_aliases"
fi
chown sgeadmin:sgeadmin "$COMMON/act_qmaster" "$COMMON"/host_aliases 2>/dev/null || true

# --------------------------------------------------------------------------- qmaster
if [ -z "$(pid_of sge_qmaster)" ]; then
    log "starting sge_qmaster"
    sge_qmaster || die "sge_qmaster did not start; see $SPOOL/qmaster/messages"
fi
wait_for "$TIMEOUT" "sge_qmaster answers" qmaster_up \
    || die "sge_qmaster did not answer within $TIMEOUT s; see $SPOOL/qmaster/messages"

# --------------------------------------------------------------------------- configuration
conf_file() {
    # conf_file NAME TEXT: write TEXT to a file qconf can read; prints its path
    local f=$LOGDIR/$1
    printf '%s\n' "$2" >"$f"
    echo "$f"
}
qconf_quiet() {
    # qconf_quiet ARGS...: qconf, its chatter to the log, its failure fatal
    local out
    out=$(qconf "$@" 2>&1) || die "qconf $* failed: $out"
    echo "qconf $*: $out" >>"$LOGDIR/qconf.log"
}
# -Mconf takes the configuration's name (global) from the file name
qconf_quiet -Mconf "$(conf_file global "$global_conf")"
qconf_quiet -Msconf "$(conf_file sched.conf "$sched_conf")"
qconf -ah "$HOST" >>"$LOGDIR/qconf.log" 2>&1 || true   # "already exists" is fine
qconf -as "$HOST" >>"$LOGDIR/qconf.log" 2>&1 || true
if [ "$(qconf -sc | grep '^gpu ' | tr -s ' ')" != "$(echo "$gpu_complex" | tr -s ' ')" ]; then
    { qconf -sc | grep -v -e '^#' -e '^gpu '; printf '%s\n' "$gpu_complex"; } >"$LOGDIR/complexes"
    qconf_quiet -Mc "$LOGDIR/complexes"
fi
if qconf -sp smp >/dev/null 2>&1; then
    qconf_quiet -Mp "$(conf_file pe.conf "$pe_conf")"
else
    qconf_quiet -Ap "$(conf_file pe.conf "$pe_conf")"
fi
if qconf -se "$HOST" >/dev/null 2>&1; then
    qconf_quiet -Me "$(conf_file host.conf "$host_conf")"
else
    qconf_quiet -Ae "$(conf_file host.conf "$host_conf")"
fi
if qconf -sq all.q >/dev/null 2>&1; then
    qconf_quiet -Mq "$(conf_file queue.conf "$queue_conf")"
else
    qconf_quiet -Aq "$(conf_file queue.conf "$queue_conf")"
fi

# --------------------------------------------------------------------------- execd
# execd reads min_uid/min_gid and the load report time when it starts: restart it after
# a configuration change
if [ -n "$(pid_of sge_execd)" ] && { [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$config_id" ]; }; then
    log "configuration changed: restarting sge_execd"
    "$HERE/sge-stop.sh" --execd-only
fi
if [ -z "$(pid_of sge_execd)" ]; then
    log "starting sge_execd"
    sge_execd || die "sge_execd did not start; see $SPOOL/execd/$HOST/messages"
fi
wait_for "$TIMEOUT" "exec host $HOST is up" execd_up || {
    qhost >&2 || true
    die "exec host $HOST did not report within $TIMEOUT s; see $SPOOL/execd/$HOST/messages" \
        "and $SPOOL/qmaster/messages"
}
# a queue instance left in error or disabled state by an earlier run: clear it once
qmod -c "all.q@$HOST" >/dev/null 2>&1 || true
qmod -e "all.q@$HOST" >/dev/null 2>&1 || true
printf '%s\n' "$config_id" >"$STAMP"
