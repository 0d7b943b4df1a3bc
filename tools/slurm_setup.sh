#!/usr/bin/env bash
# A single-node Slurm "cluster" on this machine, for the Slurm launch test
# and CI:  bash tools/slurm_setup.sh [--stop]
#
# * installs Debian's slurm-wlm and munge when slurmctld/slurmd/srun/munged
#   are missing (needs root or password-less sudo, and apt-get);
# * writes /etc/slurm/slurm.conf for this machine (hostname, CPUs, memory;
#   partition "mmcae") unless a slurm.conf not written by this script is
#   already there -- a real cluster's configuration is never touched;
# * starts munged, slurmctld and slurmd (no systemd needed) unless running;
# * waits until `sinfo` shows the node idle.
#
# Exit status: 0 ready; 2 Slurm cannot be installed here (the reason is
# printed on a line starting with "SKIP:"); 1 anything else failed.
# The daemons this script started are listed in $STATE/started, and
# `--stop` ends exactly those (by their pid files), nothing else.
set -uo pipefail

STATE=${MMCAE_SLURM_STATE:-/var/tmp/mmcae-slurm}
CONF=/etc/slurm/slurm.conf
MARKER='# written by mmcae tools/slurm_setup.sh'
PARTITION=${MMCAE_SLURM_PARTITION:-mmcae}
WAIT_S=${MMCAE_SLURM_WAIT_S:-90}

log() { echo "[slurm_setup] $*"; }
skip() { echo "SKIP: $*"; exit 2; }
die() { echo "[slurm_setup] ERROR: $*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@";
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo -n "$@";
    else return 126; fi
}

# a live (not zombie) process; daemons stopped here may linger as zombies
# where PID 1 does not reap (containers)
alive() { [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] \
    && ! awk '{ exit !($3 == "Z") }' "/proc/$1/stat" 2>/dev/null; }
pid_alive() { [ -f "$1" ] && alive "$(cat "$1" 2>/dev/null)"; }
running() { for p in $(pgrep -x "$1"); do alive "$p" && return 0; done; return 1; }

if [ "${1:-}" = "--stop" ]; then
    [ -f "$STATE/started" ] || { log "nothing started by this script"; exit 0; }
    # reverse start order: slurmd, slurmctld, munged
    for d in $(tac "$STATE/started"); do
        pidf="$STATE/$d.pid"
        if pid_alive "$pidf"; then
            log "stopping $d (pid $(cat "$pidf"))"
            as_root kill "$(cat "$pidf")" || true
            for _ in $(seq 50); do pid_alive "$pidf" || break; sleep 0.2; done
        fi
    done
    rm -f "$STATE/started"
    exit 0
fi

have_slurm() {
    for c in slurmctld slurmd srun sinfo scontrol munged; do
        command -v "$c" >/dev/null || [ -x "/usr/sbin/$c" ] || return 1
    done
}

# 1. install ------------------------------------------------------------------
if ! have_slurm; then
    if [ "$(id -u)" != 0 ] && ! (command -v sudo >/dev/null && sudo -n true 2>/dev/null); then
        skip "Slurm is not installed and this user can neither be root nor use password-less sudo to install slurm-wlm and munge"
    fi
    command -v apt-get >/dev/null || skip "Slurm is not installed and there is no apt-get to install slurm-wlm and munge"
    log "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    pkgs="slurm-wlm munge"
    if ! as_root apt-get install -y -q --no-install-recommends $pkgs; then
        as_root apt-get update -q || skip "apt-get update failed (no package mirror reachable?)"
        as_root apt-get install -y -q --no-install-recommends $pkgs \
            || skip "apt-get could not install $pkgs"
    fi
    have_slurm || skip "slurm-wlm/munge installed but slurmctld/slurmd/srun/munged not found"
fi
export PATH="$PATH:/usr/sbin:/sbin"
as_root mkdir -p "$STATE" || die "cannot create $STATE"

# 2. slurm.conf ---------------------------------------------------------------
HOST=$(hostname -s)
CPUS=$(nproc --all)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    log "$CONF exists and was not written by this script: using it as is"
    OURS=0
else
    OURS=1
    as_root mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    tmp=$(mktemp)
    cat > "$tmp" <<EOF
$MARKER
# Single node, no systemd, no cgroups, no accounting: just enough to srun.
ClusterName=mmcae
SlurmctldHost=$HOST
AuthType=auth/munge
CredType=cred/munge
# A requeued job may start again once its credential expires (default 120 s);
# starting it earlier is refused ("Job credential revoked"). 10 s keeps the
# preemption test's requeue short.
AuthInfo=cred_expire=10
SlurmUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
KillWait=10
MinJobAge=60
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE OverSubscribe=YES State=UP
EOF
    if ! cmp -s "$tmp" "$CONF" 2>/dev/null; then
        as_root cp "$tmp" "$CONF" && as_root chmod 644 "$CONF" || die "cannot write $CONF"
        log "wrote $CONF (node $HOST, $CPUS CPUs, ${MEM_MB} MB, partition $PARTITION)"
        if pid_alive "$STATE/slurmctld.pid"; then as_root scontrol reconfigure || true; fi
    fi
    rm -f "$tmp"
fi

# 3. daemons ------------------------------------------------------------------
started() { echo "$1" | as_root tee -a "$STATE/started" >/dev/null; }

if ! running munged; then
    [ -f /etc/munge/munge.key ] || as_root mungekey --create || die "no munge key"
    as_root mkdir -p /run/munge /var/log/munge /var/lib/munge
    as_root chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    log "starting munged"
    if id munge >/dev/null 2>&1 && command -v runuser >/dev/null && [ "$(id -u)" = 0 ]; then
        runuser -u munge -- munged --pid-file=/run/munge/munged.pid || die "munged failed to start"
    else
        as_root munged --force --pid-file=/run/munge/munged.pid || die "munged failed to start"
    fi
    for _ in $(seq 50); do [ -f /run/munge/munged.pid ] && break; sleep 0.1; done
    as_root ln -sf /run/munge/munged.pid "$STATE/munged.pid"
    started munged
fi
munge -n </dev/null | unmunge >/dev/null 2>&1 || die "munge does not work (munge -n | unmunge failed)"

if [ "$OURS" = 1 ]; then
    if ! pid_alive "$STATE/slurmctld.pid"; then
        log "starting slurmctld"
        as_root slurmctld || die "slurmctld failed; see /var/log/slurm/slurmctld.log"
        started slurmctld
    fi
    for _ in $(seq 50); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
    if ! pid_alive "$STATE/slurmd.pid"; then
        log "starting slurmd"
        as_root slurmd || die "slurmd failed; see /var/log/slurm/slurmd.log"
        started slurmd
    fi
fi

# 4. wait for the node --------------------------------------------------------
for i in $(seq "$WAIT_S"); do
    st=$(sinfo -h -N -p "$PARTITION" -o '%T' 2>/dev/null | head -n1)
    case "$st" in
        idle|mixed|allocated) log "node $HOST is $st in partition $PARTITION"; sinfo; exit 0 ;;
        down*|drain*|fail*)
            if [ "$OURS" = 1 ]; then as_root scontrol update nodename="$HOST" state=resume 2>/dev/null || true; fi ;;
    esac
    sleep 1
done
sinfo >&2 || true
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 2>/dev/null || true
die "node did not become idle within ${WAIT_S}s (last state: ${st:-none})"
