#!/usr/bin/env bash
# tests/slurm/run-slurm-tests.sh - the job templates of jobs/ under a real,
# private Slurm cluster of 3 virtual nodes on loopback (make check-slurm).
#
# Starts munged (own key and socket folder), slurmctld and one slurmd per
# node (agipdn1..agipdn3, `slurmd -N NODE`; Debian's Slurm is built with
# multiple-slurmd support), each slurmd in a UTS namespace of its own whose
# host name is the node's, so that Open MPI sees separate nodes (its
# shared-memory segments and node communicators go by host name), all with
# a generated slurm.conf under one temporary folder and on free non-default
# ports.  Submits each template with `sbatch --wait` on a small synthetic
# run, on 2 nodes (and 3, and 1 where a case is about one node); checks
# every job's final state (scontrol while slurmctld holds the job, then its
# job-completion log: no accounting, no sacct), since sbatch --wait returns
# 0 for a job cancelled while pending and its status alone proves nothing;
# compares the outputs with a 1-rank run's, byte for byte in every dataset
# (tests/slurm/compare_corr.py, h5py); observes which node loaded which
# constants (bin/iotrace.so, tests/iotrace.py); kills a rank on the second
# node and checks that the job ends on both; then stops everything it
# started, by process id, and removes the folder (on EXIT too, and on
# INT/TERM/HUP).
#
# Prints "PASS name" / "FAIL name: why" per check and ends with
# "N passed, M failed"; exit status 0 when nothing failed.  Runs as root
# (slurmd and unshare need it) without standard input, as in CI.  Needs
# slurmctld, slurmd, slurm-client, munge, Open MPI, python3-h5py
# (env/setup-debian.sh) and the programs built (make); it runs copies of
# them, so a rebuild meanwhile changes nothing.  A few minutes on 2 cores.
#   AGIPD_SLURM_KEEP=1   keep the temporary folder (logs) for a look after
#   AGIPD_SLURM_TIMEOUT  seconds any one job may take [default: 300]
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
TOP=$PWD
PY=/usr/bin/python3
JOB_TIMEOUT=${AGIPD_SLURM_TIMEOUT:-300}
passed=0 failed=0
T0=$SECONDS

pass() { echo "PASS $1${2:+ ($2)}"; passed=$((passed + 1)); }
fail() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit $?
}
since() { echo "$((SECONDS - $1)) s"; }
# report_field FILE FIELD...: those fields of a run's --report JSON on one
# line, or why not: the job's output interleaves the ranks' stdout and
# stderr as the launcher forwards them, so a summary line read from it may
# have another line inside it.
report_field() {
	"$PY" -c 'import json, sys; j = json.load(open(sys.argv[1])); print(*(j[k] for k in sys.argv[2:]))' "$@" 2>&1 |
		tail -n 1
}

# An outer allocation's variables would steer sbatch and srun to it.
while IFS='=' read -r name _; do
	case "$name" in SLURM_* | SBATCH_* | SRUN_* | SALLOC_*) unset "$name" ;; esac
done < <(env)

missing=()
for c in munged mungekey munge unmunge slurmctld slurmd sbatch scontrol squeue scancel sinfo srun mpirun ss unshare nsenter; do
	command -v "$c" >/dev/null 2>&1 || missing+=("$c")
done
[ -x "$PY" ] && "$PY" -c 'import h5py, numpy' 2>/dev/null || missing+=("python3-h5py")
for p in bin/agipd-correct bin/agipd-simulate; do [ -x "$p" ] || missing+=("$p (run make)"); done
[ -f bin/iotrace.so ] || missing+=("bin/iotrace.so (run make tests)")
if [ ${#missing[@]} -gt 0 ]; then
	fail setup "missing ${missing[*]} (env/setup-debian.sh installs them)"
	finish
fi

# ---------------------------------------------------------------- the job library
# jobs/agipd-job.sh outside Slurm: options from the environment, lists,
# the launcher, the settings for oversubscription.
t=$SECONDS
why=$(
	unset SLURM_CONF
	AGIPD_RUN=7 AGIPD_IN_FOLDER=/in AGIPD_OUT_FOLDER=/out AGIPD_MODULES=0-3 AGIPD_OVERWRITE=1 \
		AGIPD_OPTIONS="--common-mode --photon-energy 9.3" AGIPD_LAUNCHER=auto timeout 60 bash -c '
	. jobs/agipd-job.sh
	agipd_env_args
	want="--run 7 --in-folder /in --out-folder /out --constants-folder /in/constants --modules 0-3 --overwrite --common-mode --photon-energy 9.3"
	[ "${AGIPD_ARGS[*]}" = "$want" ] || echo "env args: ${AGIPD_ARGS[*]}"
	[ "$(agipd_arg run "${AGIPD_ARGS[@]}" --run 9)" = 9 ] || echo "agipd_arg: last --run does not win"
	[ "$(agipd_expand_list 0-2,5,07)" = "0 1 2 5 7" ] || echo "expand_list: $(agipd_expand_list 0-2,5,07)"
	[ "$(agipd_pick_launcher)" = mpirun ] || echo "outside Slurm the launcher is not mpirun"
	[ "$(AGIPD_LAUNCHER=srun agipd_pick_launcher)" = srun ] || echo "AGIPD_LAUNCHER=srun ignored"
	d=$(mktemp -d); mkdir -p "$d/r0007"
	for m in 00 03; do for q in 00000 00002 00010; do : >"$d/r0007/RAW-R0007-AGIPD$m-S$q.h5"; done; done
	: >"$d/r0007/RAW-R0008-AGIPD00-S00004.h5"
	[ "$(agipd_raw_sequences "$d" 7)" = "0 2 10" ] || echo "raw_sequences: $(agipd_raw_sequences "$d" 7)"
	rm -rf "$d"
	SLURM_CPUS_ON_NODE=2 SLURM_JOB_NUM_NODES=1 agipd_mpi_env 4
	[ "${OMPI_MCA_mpi_yield_when_idle:-}" = 1 ] || echo "4 ranks on 2 CPUs: no yield_when_idle"
	case "$GLIBC_TUNABLES" in *mmap_threshold=33554432*trim_threshold=1073741824*) ;; *) echo "GLIBC_TUNABLES=$GLIBC_TUNABLES" ;; esac
	unset OMPI_MCA_mpi_yield_when_idle AGIPD_OVERSUBSCRIBED
	SLURM_CPUS_ON_NODE=2 SLURM_JOB_NUM_NODES=2 agipd_mpi_env 4
	[ -z "${OMPI_MCA_mpi_yield_when_idle:-}" ] || echo "4 ranks on 2 nodes x 2 CPUs: yield_when_idle set"
	' 2>&1 </dev/null
)
if [ -z "$why" ]; then
	pass job-library "$(since "$t")"
else
	fail job-library "$(printf '%s' "$why" | tr '\n' ';')"
fi

# ---------------------------------------------------------------- the cluster
# /tmp, not $TMPDIR: the munge socket path must stay short.  munged wants
# every folder above its socket searchable by all, its key folder private.
T=$(mktemp -d /tmp/agipd-slurm.XXXXXX) || { fail setup "mktemp"; finish; }
chmod 755 "$T"
mkdir -p "$T/munge" "$T/munge-sock" "$T/state" "$T/spool" "$T/log" "$T/submit" "$T/tmpfs"
chmod 700 "$T/munge" "$T/state"
chmod 755 "$T/munge-sock"
export SLURM_CONF=$T/slurm.conf
MUNGE_PID="" CTLD_PID="" BG=""
# The virtual nodes: host names unusual enough that their /dev/shm files
# (Open MPI names its segments after the host) are told apart.
NPFX=agipdn
NNODES=3
NODES=()
for ((i = 1; i <= NNODES; i++)); do NODES+=("$NPFX$i"); done
SLURMD_PIDS=()
stopped=0

# stop_pid PID NAME: TERM, up to 10 s, then KILL; only this process.
stop_pid() {
	local pid=$1 i
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# Processes of this test cluster that outlived their daemons (job steps,
# slurmstepd): those that carry this folder's SLURM_CONF in their
# environment and do not descend from this script (its own subshells).
descends_from() {   # PID ANCESTOR
	local p=$1 i
	for ((i = 0; i < 64; i++)); do
		[ "$p" = "$2" ] && return 0
		# The name in field 2 may hold blanks: the parent follows the last ')'.
		p=$(sed -n 's/.*) [A-Za-z] \([0-9]*\) .*/\1/p' 2>/dev/null <"/proc/$p/stat") || return 1
		[ -n "$p" ] && [ "$p" -gt 1 ] || return 1
	done
	return 1
}
# stop_tree PID: a background command of this script and what it started
# (an sbatch --wait still waiting when the script is interrupted).
stop_tree() {
	local root=$1 p kids=()
	[ -n "$root" ] && kill -0 "$root" 2>/dev/null || return 0
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" != "$root" ] && descends_from "$p" "$root" && kids+=("$p")
	done
	kill -TERM "$root" "${kids[@]}" 2>/dev/null
	return 0
}
leftovers() {
	local p
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -qx "SLURM_CONF=$SLURM_CONF" || continue
		descends_from "$p" $$ || echo "$p"
	done
	return 0
}

shutdown_cluster() {
	[ "$stopped" = 1 ] && return 0
	stopped=1
	stop_tree "$BG"
	if [ -n "$CTLD_PID" ] && kill -0 "$CTLD_PID" 2>/dev/null; then
		timeout 10 scancel --user="$(id -un)" </dev/null >/dev/null 2>&1
		for ((i = 0; i < 50; i++)); do
			[ -z "$(timeout 5 squeue -h -o %i 2>/dev/null </dev/null)" ] && break
			sleep 0.2
		done
	fi
	for p in "${SLURMD_PIDS[@]}"; do stop_pid "$p"; done
	stop_pid "$CTLD_PID"
	stop_pid "$MUNGE_PID"
	local left
	left=$(leftovers)
	if [ -n "$left" ]; then
		echo "slurm tests: stopping leftover processes $left" >&2
		for p in $left; do kill -KILL "$p" 2>/dev/null; done
	fi
	return 0
}

on_exit() {
	shutdown_cluster
	if [ "${AGIPD_SLURM_KEEP:-0}" = 1 ]; then
		echo "slurm tests: kept $T" >&2
	else
		rm -rf "$T"
	fi
}
trap on_exit EXIT
trap 'echo "slurm tests: interrupted" >&2; exit 130' INT TERM HUP

# Free ports next to each other (slurmctld, then one per slurmd), away
# from Slurm's 6817/6818.
port_free() { [ -z "$(ss -Htln "( sport = :$1 )" 2>/dev/null)" ]; }
ports_free() {   # FIRST COUNT
	local q
	for ((q = $1; q < $1 + $2; q++)); do port_free "$q" || return 1; done
}
CTLD_PORT=
for ((i = 0; i < 50; i++)); do
	p=$((20000 + RANDOM % 20000))
	if ports_free "$p" $((NNODES + 1)); then
		CTLD_PORT=$p
		break
	fi
done
[ -n "$CTLD_PORT" ] || { fail setup "no free port"; finish; }
SLURMD_PORT=$((CTLD_PORT + 1))

# Every virtual node claims the machine's CPUs (they share them) and a
# part of its memory.
CPUS=$(nproc)
NT=$((CPUS < 2 ? CPUS : 2))       # ranks per node of every test job
MEM=$(awk -v n="$NNODES" '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.8 / n }' /proc/meminfo)
cat >"$SLURM_CONF" <<EOF
# Generated by tests/slurm/run-slurm-tests.sh: a private cluster of
# $NNODES virtual nodes on loopback, one slurmd each (slurmd -N NODE), %n
# in every per-node path.
ClusterName=agipdtest
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge-sock/munge.socket
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool/%n
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.%n.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.%n.log
# Per node: the job's TMPDIR and PMIx's folders.
TmpFS=$T/tmpfs/%n
# No cgroups: process tracking by /proc, no task binding, no accounting.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# Forget finished jobs at once (22.05 makes 0 into 2 s): sbatch --wait
# then returns within about 2 s of the end instead of backing off to 32 s.
# Their final states go to the job-completion log.
MinJobAge=0
JobCompType=jobcomp/filetxt
JobCompLoc=$T/jobcomp.log
# Reject at submission what the node cannot run, instead of pending forever.
EnforcePartLimits=ALL
ReturnToService=2
SchedulerType=sched/builtin
InactiveLimit=0
KillWait=5
EOF
for ((i = 0; i < NNODES; i++)); do
	echo "NodeName=${NODES[i]} NodeHostname=${NODES[i]} NodeAddr=127.0.0.1 Port=$((SLURMD_PORT + i)) CPUs=$CPUS RealMemory=$MEM State=UNKNOWN"
	mkdir -p "$T/spool/${NODES[i]}" "$T/tmpfs/${NODES[i]}"
done >>"$SLURM_CONF"
echo "PartitionName=test Nodes=$NPFX[1-$NNODES] Default=YES MaxTime=30 State=UP" >>"$SLURM_CONF"

t=$SECONDS
if [ "$(id -u)" -ne 0 ]; then
	fail setup "slurmd must run as root (SlurmdUser=root); run as root or in CI"
	finish
fi
mungekey --create --keyfile="$T/munge/munge.key" >/dev/null 2>&1 ||
	dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$T/munge/munge.key"
munged -F --key-file="$T/munge/munge.key" --socket="$T/munge-sock/munge.socket" \
	--pid-file="$T/munge/munged.pid" --log-file="$T/munge/munged.log" --seed-file="$T/munge/munged.seed" \
	</dev/null >"$T/log/munged.out" 2>&1 &
MUNGE_PID=$!
ok=0
for ((i = 0; i < 100; i++)); do
	if [ -S "$T/munge-sock/munge.socket" ] &&
		timeout 5 munge -n -S "$T/munge-sock/munge.socket" 2>/dev/null |
		timeout 5 unmunge -S "$T/munge-sock/munge.socket" >/dev/null 2>&1; then
		ok=1
		break
	fi
	kill -0 "$MUNGE_PID" 2>/dev/null || break
	sleep 0.1
done
if [ "$ok" = 1 ]; then
	pass munge "$(since "$t")"
else
	fail munge "no credential round trip: $(tail -n 3 "$T/log/munged.out" | tr '\n' ' ')"
	finish
fi

t=$SECONDS
slurmctld -D -f "$SLURM_CONF" </dev/null >"$T/log/slurmctld.out" 2>&1 &
CTLD_PID=$!
# Each slurmd in a UTS namespace of its own, named after its node: the
# job steps it starts see that host name.  unshare and sh exec, so the
# process id is slurmd's.
for n in "${NODES[@]}"; do
	unshare --uts /bin/sh -c 'hostname "$1" && exec slurmd -D -N "$1" -f "$2"' sh "$n" "$SLURM_CONF" \
		</dev/null >"$T/log/slurmd-$n.out" 2>&1 &
	SLURMD_PIDS+=($!)
done
ok=0
for ((i = 0; i < 150; i++)); do
	st=$(timeout 5 sinfo -h -N -o %T </dev/null 2>/dev/null | sort | uniq -c | tr -s ' ' | tr '\n' ' ')
	[ "$st" = " $NNODES idle " ] && { ok=1; break; }
	kill -0 "$CTLD_PID" 2>/dev/null || break
	for p in "${SLURMD_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || break 2; done
	sleep 0.2
done
if [ "$ok" = 1 ]; then
	pass slurm-up "$NNODES nodes ${NODES[*]}, ports $CTLD_PORT-$((SLURMD_PORT + NNODES - 1)), $CPUS CPUs each, $(since "$t")"
else
	fail slurm-up "nodes not idle (states '${st:-none}'): $(tail -n 3 "$T/log/slurmctld.out" "$T"/log/slurmd-*.out | tr '\n' ' ')"
	finish
fi

# ---------------------------------------------------------------- helpers

# Job states.  scontrol knows a job while it is pending or running and for
# MinJobAge (2 s here) after; the final state of each job and array task is
# then in slurmctld's job-completion log (jobcomp/filetxt: no accounting
# database, no sacct).  An array's tasks all carry ArrayJobId=ID.
#
# job_states ID: "JobId ArrayTaskId JobState ExitCode" per job or array
# task, the final record where there is one, else scontrol's.
job_states() {
	{
		timeout 10 scontrol -o show job </dev/null 2>/dev/null | sed 's/^/live /'
		sed 's/^/final /' "$T/jobcomp.log" 2>/dev/null
	} | awk -v want="$1" '{
		id = ""; arr = ""; task = "-"; st = ""; ec = ""
		for (i = 2; i <= NF; i++) {
			split($i, kv, "=")
			if (kv[1] == "JobId") id = kv[2]
			else if (kv[1] == "ArrayJobId") arr = kv[2]
			else if (kv[1] == "ArrayTaskId") task = kv[2]
			else if (kv[1] == "JobState") st = kv[2]
			else if (kv[1] == "ExitCode") ec = kv[2]
		}
		if (id != want && arr != want) next
		if ($1 == "final") { fin[id] = id " " task " " st " " ec; order[id] = 1 }
		else if (!(id in fin)) { live[id] = id " " task " " st " " ec; order[id] = 1 }
	} END {
		for (id in order) print (id in fin) ? fin[id] : live[id]
	}' | sort -n
}

# job_done ID [NTASKS]: wait (bounded) until the job, or NTASKS tasks of the
# array, have a final record and nothing of it is pending or running.
job_done() {
	local id=$1 want=${2:-1} i s nfinal
	for ((i = 0; i < 150; i++)); do
		s=$(job_states "$id")
		nfinal=$(awk -v w="$id" '{
			for (i = 1; i <= NF; i++) if ($i == "JobId=" w || $i == "ArrayJobId=" w) { n++; break }
		} END { print n + 0 }' "$T/jobcomp.log" 2>/dev/null)
		if [ "${nfinal:-0}" -ge "$want" ] && ! printf '%s\n' "$s" |
			awk '$3 ~ /PENDING|RUNNING|CONFIGURING|COMPLETING|SUSPENDED|REQUEUE|RESIZING/ { b = 1 } END { exit !b }'; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# job_ok ID [NTASKS]: every task COMPLETED with exit 0:0 (and NTASKS of
# them); else prints why and returns 1.
job_ok() {
	local id=$1 want=${2:-1} s n bad
	job_done "$id" "$want" || { echo "job $id: no final state after 30 s: $(job_states "$id" | tr '\n' ';')"; return 1; }
	s=$(job_states "$id")
	n=$(printf '%s\n' "$s" | grep -c .)
	bad=$(printf '%s\n' "$s" | awk 'NF && !($3 == "COMPLETED" && $4 == "0:0")')
	if [ -z "$s" ]; then
		echo "job $id unknown to scontrol and the completion log"
		return 1
	elif [ -n "$bad" ]; then
		echo "job $(printf '%s' "$bad" | tr '\n' ';')"
		return 1
	elif [ "$n" -ne "$want" ]; then
		echo "job $id: $n task(s), expected $want"
		return 1
	fi
	return 0
}

# submit NAME ENV... -- SBATCH-ARGS...: sbatch --wait --parsable with the
# given environment, bounded; sets JOB (id) and SB_RC; logs in $T/NAME.sbatch.
submit() {
	local name=$1 envs=()
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	JOB="" SB_RC=0
	# In the background: `wait` lets a TERM/INT trap run at once.
	(cd "$T/submit" && env "${envs[@]}" timeout "$JOB_TIMEOUT" sbatch --wait --parsable "$@") \
		</dev/null >"$T/$name.sbatch" 2>&1 &
	BG=$!
	wait "$BG" || SB_RC=$?
	JOB=$(grep -Eo '^[0-9]+' "$T/$name.sbatch" | head -n 1)
	if [ "$SB_RC" = 124 ] && [ -n "$JOB" ]; then
		timeout 10 scancel "$JOB" </dev/null 2>/dev/null
	fi
	return 0
}

compare() {   # REF OUT [compare_corr.py options]: prints the problems
	timeout 300 "$PY" tests/slurm/compare_corr.py "$@" 2>&1 | tail -n 5 | tr '\n' ' '
	return "${PIPESTATUS[0]}"
}

# The programs, copied: a rebuild in the work tree during the test must not
# change (or half-write) what the jobs run.
mkdir -p "$T/bin"
export AGIPD_CORRECT=$T/bin/agipd-correct AGIPD_SIMULATE=$T/bin/agipd-simulate
for ((i = 0; i < 10; i++)); do
	cp bin/agipd-correct bin/agipd-simulate "$T/bin/" 2>/dev/null &&
		timeout 30 "$AGIPD_CORRECT" --version </dev/null >/dev/null 2>&1 &&
		timeout 30 "$AGIPD_SIMULATE" --help </dev/null >/dev/null 2>&1 &&
		break
	sleep 2
done
[ "$i" -lt 10 ] || { fail setup "bin/agipd-correct or bin/agipd-simulate does not run"; finish; }

# Resources that fit the virtual nodes; on the command line they override
# the templates' #SBATCH lines (which ask for more than a node has).
FIT=(--nodes=1 --ntasks-per-node="$NT" --cpus-per-task=1 --mem=1G --time=5)
FIT2=(--nodes=2 --ntasks-per-node="$NT" --cpus-per-task=1 --mem=1G --time=5)
FIT3=(--nodes=3 --ntasks-per-node="$NT" --cpus-per-task=1 --mem=1G --time=5)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

# traced NAME: the path of an agipd-correct that records, per process and
# host name, what it took from the constants files and which shared
# segments it mapped (bin/iotrace.so) into $T/trace-NAME/, and that carries
# AGIPD_SLURM_MARK (its processes are found by it).
traced() {
	local w=$T/bin/correct-$1 d=$T/trace-$1
	mkdir -p "$d"
	printf '#!/bin/sh\nAGIPD_SLURM_MARK=%s LD_PRELOAD=%s AGIPD_IOTRACE_DIR=%s AGIPD_IOTRACE_MATCH=/AGIPD exec %s "$@"\n' \
		"$T" "$T/bin/iotrace.so" "$d" "$T/bin/agipd-correct" >"$w"
	chmod +x "$w"
	echo "$w"
}
# nodes_check NAME NODES: each node loads a module's constants once, seen in
# the trace of NAME (tests/iotrace.py); prints the problems or a summary.
nodes_check() {
	timeout 60 "$PY" tests/iotrace.py "$T/trace-$1" "$2" "$D" 2>&1 | tr '\n' ' '
	return "${PIPESTATUS[0]}"
}
# ran_on OUTFILE: the nodes the job says it ran on.
ran_on() { sed -n 's/^agipd-job: job [0-9]* on \([^:]*\):.*/\1/p' "$1" | head -n 1; }
cp bin/iotrace.so "$T/bin/"

# ---------------------------------------------------------------- the run
t=$SECONDS
D=$T/data
mkdir -p "$T/ref"
if timeout "$JOB_TIMEOUT" "$AGIPD_SIMULATE" --out-folder "$D" --run 1 --modules 0-3 --sequences 3 --trains 3 --cells 16 --no-truth \
	</dev/null >"$T/simulate.log" 2>&1 &&
	timeout "$JOB_TIMEOUT" mpirun -np 1 "$AGIPD_CORRECT" --in-folder "$D" --out-folder "$T/ref" --run 1 \
		--constants-folder "$D/constants" --quiet </dev/null >"$T/ref.log" 2>&1; then
	n=$(find "$T/ref" -name 'CORR-*.h5' | wc -l)
	if [ "$n" -eq 12 ]; then
		pass reference "12 files by a 1-rank run, $(since "$t")"
	else
		fail reference "$n CORR files, expected 12"
	fi
else
	fail reference "$(tail -n 3 "$T/simulate.log" "$T/ref.log" | tr '\n' ' ')"
	finish
fi

# ---------------------------------------------------------------- templates

# correct.sbatch on 2 nodes, everything from the environment, launcher auto
# (srun).
t=$SECONDS
submit correct-srun AGIPD_RUN=1 AGIPD_IN_FOLDER="$D" AGIPD_OUT_FOLDER="$T/out-srun" \
	AGIPD_CONSTANTS_FOLDER="$D/constants" AGIPD_CORRECT="$(traced srun)" AGIPD_OPTIONS="--report $T/correct-srun.json" \
	-- "${FIT2[@]}" \
	--output="$T/correct-srun.out" "$TOP/jobs/correct.sbatch"
why=$(job_ok "$JOB") || true
if [ -z "$JOB" ]; then
	fail correct-srun-2nodes "sbatch: $(tr '\n' ' ' <"$T/correct-srun.sbatch")"
elif [ -n "$why" ]; then
	fail correct-srun-2nodes "$why; sbatch status $SB_RC; $(tail -n 5 "$T/correct-srun.out" | tr '\n' ' ')"
elif ! grep -q 'launch: srun --mpi=pmix' "$T/correct-srun.out"; then
	fail correct-srun-2nodes "auto launcher did not pick srun --mpi=pmix: $(grep launch: "$T/correct-srun.out")"
elif [ "$(report_field "$T/correct-srun.json" n_ranks)" != $((2 * NT)) ]; then
	fail correct-srun-2nodes "not $((2 * NT)) ranks: $(report_field "$T/correct-srun.json" n_ranks)"
elif ! why=$(compare "$T/ref" "$T/out-srun"); then
	fail correct-srun-2nodes "outputs differ from the 1-rank run's: $why"
elif ! nodes=$(nodes_check srun 2); then
	fail correct-srun-2nodes "constants per node: $nodes"
else
	pass correct-srun-2nodes "job $JOB on $(ran_on "$T/correct-srun.out") COMPLETED 0:0, srun --mpi=pmix, $((2 * NT)) ranks, 12 files equal; $nodes; $(since "$t")"
fi

# correct.sbatch on 2 nodes, options as arguments, mpirun forced, a subset.
t=$SECONDS
submit correct-mpirun AGIPD_LAUNCHER=mpirun AGIPD_CORRECT="$(traced mpirun)" -- "${FIT2[@]}" \
	--output="$T/correct-mpirun.out" "$TOP/jobs/correct.sbatch" --run 1 --in-folder "$D" \
	--out-folder "$T/out-mpirun" --constants-folder "$D/constants" --modules 1-2 --sequences 0,2
why=$(job_ok "$JOB") || true
if [ -z "$JOB" ]; then
	fail correct-mpirun-2nodes "sbatch: $(tr '\n' ' ' <"$T/correct-mpirun.sbatch")"
elif [ -n "$why" ]; then
	fail correct-mpirun-2nodes "$why; $(tail -n 5 "$T/correct-mpirun.out" | tr '\n' ' ')"
elif ! grep -q 'launch: mpirun' "$T/correct-mpirun.out"; then
	fail correct-mpirun-2nodes "AGIPD_LAUNCHER=mpirun not used: $(grep launch: "$T/correct-mpirun.out")"
elif [ "$(find "$T/out-mpirun" -name "CORR-*.h5" | wc -l)" -ne 4 ]; then
	fail correct-mpirun-2nodes "expected the 4 files of modules 1-2, sequences 0,2: $(ls "$T/out-mpirun" | tr '\n' ' ')"
elif ! why=$(compare "$T/ref" "$T/out-mpirun" --modules 1-2 --sequences 0,2); then
	fail correct-mpirun-2nodes "outputs differ from the 1-rank run's: $why"
elif ! nodes=$(nodes_check mpirun 2); then
	fail correct-mpirun-2nodes "constants per node: $nodes"
else
	pass correct-mpirun-2nodes "job $JOB on $(ran_on "$T/correct-mpirun.out") COMPLETED 0:0, mpirun, 4 files equal; $nodes; $(since "$t")"
fi

# 3 nodes: one file whose group of ranks spans all three.
t=$SECONDS
submit correct-3nodes AGIPD_LAUNCHER=mpirun AGIPD_RUN=1 AGIPD_IN_FOLDER="$D" AGIPD_OUT_FOLDER="$T/out-3nodes" \
	AGIPD_MODULES=3 AGIPD_SEQUENCES=1 AGIPD_CORRECT="$(traced 3nodes)" AGIPD_OPTIONS="--report $T/correct-3nodes.json" \
	-- "${FIT3[@]}" \
	--output="$T/correct-3nodes.out" "$TOP/jobs/correct.sbatch"
why=$(job_ok "$JOB") || true
if [ -z "$JOB" ]; then
	fail correct-3nodes "sbatch: $(tr '\n' ' ' <"$T/correct-3nodes.sbatch")"
elif [ -n "$why" ]; then
	fail correct-3nodes "$why; $(tail -n 5 "$T/correct-3nodes.out" | tr '\n' ' ')"
elif [ "$(report_field "$T/correct-3nodes.json" n_ranks)" != $((3 * NT)) ]; then
	fail correct-3nodes "not $((3 * NT)) ranks: $(report_field "$T/correct-3nodes.json" n_ranks)"
elif ! why=$(compare "$T/ref" "$T/out-3nodes" --modules 3 --sequences 1); then
	fail correct-3nodes "outputs differ from the 1-rank run's: $why"
elif ! nodes=$(nodes_check 3nodes 3); then
	fail correct-3nodes "constants per node: $nodes"
else
	pass correct-3nodes "job $JOB on $(ran_on "$T/correct-3nodes.out"): 1 file on $((3 * NT)) ranks of 3 nodes, equal; $nodes; $(since "$t")"
fi

# correct.sbatch with more ranks than CPUs on one node: srun --overcommit,
# and ranks that wait yield their core (OMPI_MCA_mpi_yield_when_idle=1).
t=$SECONDS
submit correct-over AGIPD_NP=$((2 * NT)) AGIPD_RUN=1 AGIPD_IN_FOLDER="$D" AGIPD_OUT_FOLDER="$T/out-over" \
	AGIPD_MODULES=0 AGIPD_OPTIONS="--report $T/correct-over.json" -- "${FIT[@]}" --output="$T/correct-over.out" \
	"$TOP/jobs/correct.sbatch"
why=$(job_ok "$JOB") || true
if [ -z "$JOB" ]; then
	fail correct-oversubscribed "sbatch: $(tr '\n' ' ' <"$T/correct-over.sbatch")"
elif [ -n "$why" ]; then
	fail correct-oversubscribed "$why; $(tail -n 5 "$T/correct-over.out" | tr '\n' ' ')"
elif ! grep -q "launch: srun --mpi=pmix --ntasks=$((2 * NT)) .*--overcommit" "$T/correct-over.out" ||
	! grep -q 'OMPI_MCA_mpi_yield_when_idle=1 ' "$T/correct-over.out"; then
	fail correct-oversubscribed "no --overcommit or yield setting: $(grep -E 'launch:|env:' "$T/correct-over.out" | tr '\n' ' ')"
elif [ "$(report_field "$T/correct-over.json" n_ranks)" != $((2 * NT)) ]; then
	fail correct-oversubscribed "agipd-correct did not run on $((2 * NT)) ranks: $(report_field "$T/correct-over.json" n_ranks)"
elif ! why=$(compare "$T/ref" "$T/out-over" --modules 0); then
	fail correct-oversubscribed "outputs differ from the 1-rank run's: $why"
else
	pass correct-oversubscribed "job $JOB: $((2 * NT)) ranks on $NT CPUs of 1 node, srun --overcommit, yield when idle, 3 files equal, $(since "$t")"
fi

# correct-array.sbatch through submit-run.sh: 3 sequences, 2 per task, each
# task on 2 nodes.
t=$SECONDS
(cd "$T/submit" && env AGIPD_SBATCH_OPTS="${FIT2[*]} --output=$T/array-%A_%a.out" AGIPD_LAUNCHER=mpirun \
	timeout "$JOB_TIMEOUT" "$TOP/jobs/submit-run.sh" --seqs-per-task 2 --wait -- --run 1 --in-folder "$D" \
	--out-folder "$T/out-array" --constants-folder "$D/constants") </dev/null >"$T/array.sbatch" 2>&1 &
BG=$!
wait "$BG"
rc=$?
JOB=$(grep -Eo '^[0-9]+' "$T/array.sbatch" | head -n 1)
why=$(job_ok "$JOB" 2) || true
if [ -z "$JOB" ]; then
	fail correct-array-2nodes "submit-run.sh (status $rc): $(tr '\n' ' ' <"$T/array.sbatch")"
elif [ -n "$why" ]; then
	fail correct-array-2nodes "$why; $(cat "$T"/array-*.out 2>/dev/null | tail -n 5 | tr '\n' ' ')"
elif ! grep -q 'sequences 0,1 ' "$T/array-${JOB}_0.out" || ! grep -q 'sequences 2 ' "$T/array-${JOB}_1.out"; then
	fail correct-array-2nodes "tasks did not get sequences 0,1 and 2: $(grep -h 'array job' "$T"/array-*.out | tr '\n' ' ')"
elif ! why=$(compare "$T/ref" "$T/out-array"); then
	fail correct-array-2nodes "outputs differ from the 1-rank run's: $why"
else
	pass correct-array-2nodes "array job $JOB: 2 tasks of 2 nodes COMPLETED 0:0, 12 files equal, $(since "$t")"
fi

# scaling.sbatch on 2 nodes: 1 and 2 nodes, 1 and 2 ranks per node, on a
# run it generates; outputs checked against a 1-rank run on that data.
t=$SECONDS
S=$T/scaling
submit scaling AGIPD_LAUNCHER=mpirun AGIPD_SCALING_DIR="$S" AGIPD_SCALING_KEEP=1 AGIPD_SIM_MODULES=0-1 \
	AGIPD_SIM_SEQUENCES=2 AGIPD_SIM_TRAINS=3 AGIPD_SIM_CELLS=16 AGIPD_MODEL_SEQUENCES=4 -- "${FIT2[@]}" \
	--output="$T/scaling.out" "$TOP/jobs/scaling.sbatch"
why=$(job_ok "$JOB") || true
check=
if [ -z "$JOB" ]; then
	check="sbatch: $(tr '\n' ' ' <"$T/scaling.sbatch")"
elif [ -n "$why" ]; then
	check="$why; $(tail -n 8 "$T/scaling.out" | tr '\n' ' ')"
else
	check=$(timeout 120 "$PY" - "$S" "$NT" <<'EOF'
import json, sys
d, nt = sys.argv[1], int(sys.argv[2])
j = json.load(open(d + "/scaling.json"))
points = sorted((m["ranks"], m["nodes"]) for m in j["measurements"])
want = sorted({(1, 1), (nt, 1), (2, 2), (2 * nt, 2)})
if points != want:
    print("measured (ranks, nodes) %s, expected %s" % (points, want))
if sorted(int(k) for k in j["model"]["rates_by_ranks_per_node"]) != sorted({1, nt}):
    print("model rates for ranks per node %s, expected %s" % (
        sorted(j["model"]["rates_by_ranks_per_node"]), sorted({1, nt})))
fr = j["model"]["full_run"]
if fr["modules"] != 16 or not fr["predictions"]:
    print("no model of a 16-module run")
if not all(p["seconds"] > 0 for p in fr["predictions"]):
    print("model times not positive")
if not all(m["wall_s"] > 0 and m["frames"] == 192 and m["model_s"] > 0 for m in j["measurements"]):
    print("measurements lack times, frames or the model's figure")
if j["failed_runs"]:
    print("failed runs: %s" % j["failed_runs"])
if not (j["nodes"]["virtual"] and len(j["nodes"]["hosts"]) == 2):
    print("the report does not see 2 virtual nodes on one machine: %s" % j["nodes"])
png = open(d + "/scaling.png", "rb").read()
if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 10000:
    print("scaling.png is not a plot")
txt = open(d + "/scaling.txt").read()
if "Full run to size: 16 modules" not in txt or "Measured" not in txt:
    print("scaling.txt lacks the tables")
if "NOTE: the 2 nodes are one machine" not in txt:
    print("scaling.txt does not say that the nodes are one machine")
EOF
)
	if [ -z "$check" ]; then
		mkdir -p "$S/ref"
		if ! timeout "$JOB_TIMEOUT" mpirun -np 1 "$AGIPD_CORRECT" --in-folder "$S/data" --out-folder "$S/ref" \
			--run 1 --constants-folder "$S/data/constants" --quiet </dev/null >"$T/scaling-ref.log" 2>&1; then
			check="1-rank run on the generated data failed: $(tail -n 3 "$T/scaling-ref.log" | tr '\n' ' ')"
		elif ! why=$(compare "$S/ref" "$S/out"); then
			check="outputs differ from the 1-rank run's: $why"
		fi
	fi
fi
if [ -n "$check" ]; then
	fail scaling-2nodes "$(printf '%s' "$check" | tr '\n' ' ')"
	# What a failed run printed, for the CI log (the folder goes at the end).
	logs=$({
		awk -F '\t' 'NR > 1 && $6 != 0 { print $8 }' "$S/runs.tsv"
		"$PY" -c 'import json, sys; print("\n".join(f["log"] for f in json.load(open(sys.argv[1]))["failed_runs"]))' \
			"$S/scaling.json"
	} 2>/dev/null | sort -u)
	for f in $logs; do
		echo "--- $f (the last 30 lines):"
		tail -n 30 "$S/$f" 2>&1 | sed 's/^/    /'
	done
else
	pass scaling-2nodes "job $JOB COMPLETED 0:0; (ranks, nodes) (1,1) ($NT,1) (2,2) ($((2 * NT)),2); table, JSON, PNG, model; outputs equal; $(since "$t")"
fi

# kill -9 of a rank on the second node, once the first round of files is
# complete and the second is being written: the job ends on both nodes
# within 30 s, no rank is left, the complete files are intact and no
# incomplete file has a final CORR name, and the re-run completes and equals
# a 1-rank run.
t=$SECONDS
K=$T/kill
KARGS=(--batch-frames 4 --common-mode)
check=
if ! timeout "$JOB_TIMEOUT" "$AGIPD_SIMULATE" --out-folder "$K/data" --run 1 --modules 0-1 --sequences 4 \
	--trains 12 --cells 16 --no-truth </dev/null >"$T/kill-simulate.log" 2>&1 ||
	! timeout "$JOB_TIMEOUT" mpirun -np 1 "$AGIPD_CORRECT" --in-folder "$K/data" --out-folder "$K/ref" --run 1 \
		--constants-folder "$K/data/constants" --quiet "${KARGS[@]}" </dev/null >"$T/kill-ref.log" 2>&1; then
	check="the data or the 1-rank run: $(tail -n 3 "$T/kill-simulate.log" "$T/kill-ref.log" | tr '\n' ' ')"
fi
# marked_ranks: "PID HOST" of every running agipd-correct of this test.
marked_ranks() {
	local p
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = agipd-correct ] || continue
		tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -qx "AGIPD_SLURM_MARK=$T" || continue
		echo "$p $(nsenter -t "$p" -u hostname 2>/dev/null)"
	done
}
if [ -z "$check" ]; then
	kw=$(traced kill)
	(cd "$T/submit" && env AGIPD_RUN=1 AGIPD_IN_FOLDER="$K/data" AGIPD_OUT_FOLDER="$K/out" AGIPD_CORRECT="$kw" \
		AGIPD_OPTIONS="${KARGS[*]}" timeout "$JOB_TIMEOUT" sbatch --parsable "${FIT2[@]}" \
		--output="$T/kill.out" "$TOP/jobs/correct.sbatch") </dev/null >"$T/kill.sbatch" 2>&1
	JOB=$(grep -Eo '^[0-9]+' "$T/kill.sbatch" | head -n 1)
	victim=
	[ -n "$JOB" ] && for ((i = 0; i < 1200; i++)); do
		ranks=$(marked_ranks)
		if [ "$(printf '%s\n' "$ranks" | grep -c " ${NPFX}")" -eq $((2 * NT)) ] &&
			compgen -G "$K/out/CORR-*.h5" >/dev/null && compgen -G "$K/out/.*.part" >/dev/null; then
			victim=$(printf '%s\n' "$ranks" | awk -v n="${NODES[1]}" '$2 == n { p = $1 } END { print p }')
			break
		fi
		st=$(job_states "$JOB")
		[ -n "$st" ] && ! printf '%s\n' "$st" | awk '$3 ~ /PENDING|RUNNING|CONFIGURING/ { b = 1 } END { exit !b }' && break
		sleep 0.05
	done
	if [ -z "$JOB" ]; then
		check="sbatch: $(tr '\n' ' ' <"$T/kill.sbatch")"
	elif [ -z "$victim" ]; then
		check="no rank on ${NODES[1]} while the second round was written (job $JOB: $(job_states "$JOB" | tr '\n' ' ')); ranks: $(marked_ranks | tr '\n' ' ')"
	else
		sleep 0.2
		kill -KILL "$victim"
		tk=$SECONDS
		for ((i = 0; i < 300; i++)); do
			st=$(job_states "$JOB")
			printf '%s\n' "$st" | awk '$3 ~ /PENDING|RUNNING|CONFIGURING|COMPLETING/ { b = 1 } END { exit b }' &&
				[ -n "$st" ] && break
			sleep 0.1
		done
		took=$((SECONDS - tk))
		for ((i = 0; i < 100; i++)); do [ -z "$(marked_ranks)" ] && break; sleep 0.1; done
		left=$(marked_ranks | tr '\n' ' ')
		if [ "$took" -ge 30 ]; then
			check="job $JOB still $(job_states "$JOB" | tr '\n' ' ') 30 s after the kill"
		elif [[ "$st" != *FAILED* ]]; then
			check="job $JOB after the kill: $st"
		elif [ -n "$left" ]; then
			check="ranks left after the job ended: $left"
		else
			# whatever has a final name is complete: equal to the 1-rank run
			done_files=$(find "$K/out" -name 'CORR-*.h5' | wc -l)
			bad=$(timeout 120 "$PY" - "$K/ref" "$K/out" <<'EOF'
import glob, os, sys
sys.path.insert(0, "tests/slurm")
import compare_corr as cc
import h5py
ref, out = sys.argv[1], sys.argv[2]
for p in sorted(glob.glob(os.path.join(out, "CORR-*.h5"))):
    with h5py.File(p, "r") as o, h5py.File(os.path.join(ref, os.path.basename(p)), "r") as r:
        for d in cc.datasets(r):
            if d not in o or not cc.same(r[d][()], o[d][()]):
                print("%s: %s incomplete or wrong" % (os.path.basename(p), d))
EOF
)
			if [ -n "$bad" ]; then
				check="an incomplete or wrong file under a final name: $bad"
			fi
		fi
	fi
fi
if [ -z "$check" ]; then
	kept=$done_files
	submit kill-rerun AGIPD_RUN=1 AGIPD_IN_FOLDER="$K/data" AGIPD_OUT_FOLDER="$K/out" \
		AGIPD_OPTIONS="${KARGS[*]} --report $T/kill-rerun.json" -- "${FIT2[@]}" --output="$T/kill-rerun.out" \
		"$TOP/jobs/correct.sbatch"
	why=$(job_ok "$JOB") || true
	counts=$(report_field "$T/kill-rerun.json" files_corrected files_skipped files_failed)
	if [ -n "$why" ]; then
		check="the re-run: $why; $(tail -n 5 "$T/kill-rerun.out" | tr '\n' ' ')"
	elif [ "$counts" != "$((8 - kept)) $kept 0" ]; then
		check="the re-run should correct $((8 - kept)) and skip $kept (corrected, skipped, failed: $counts): $(
			grep 'file(s) corrected' "$T/kill-rerun.out")"
	elif ! why=$(compare "$K/ref" "$K/out"); then
		check="after the re-run, outputs differ from the 1-rank run's: $why"
	fi
fi
if [ -n "$check" ]; then
	fail kill-rank-2nodes "$(printf '%s' "$check" | tr '\n' ' ')"
else
	pass kill-rank-2nodes "rank $victim on ${NODES[1]} killed: job ended on both nodes in ${took} s, FAILED, no rank left; $kept complete file(s) kept; re-run COMPLETED, 8 files equal; $(since "$t")"
fi

# ---------------------------------------------------------------- the checks check

# A job cancelled while pending: sbatch --wait says 0, the state says CANCELLED.
t=$SECONDS
(cd "$T/submit" && timeout 60 sbatch --wait --parsable --hold "${FIT[@]}" --output=/dev/null \
	"$TOP/jobs/correct.sbatch") </dev/null >"$T/held.sbatch" 2>&1 &
held=$!
BG=$held
JOB=
for ((i = 0; i < 50; i++)); do
	JOB=$(grep -Eo '^[0-9]+' "$T/held.sbatch" | head -n 1)
	[ -n "$JOB" ] && break
	sleep 0.1
done
[ -n "$JOB" ] && timeout 10 scancel "$JOB" </dev/null
wait "$held"
rc=$?
why=$(job_ok "$JOB") || true
if [ -z "$JOB" ]; then
	fail cancelled-pending "no job id: $(tr '\n' ' ' <"$T/held.sbatch")"
elif [ -z "$why" ]; then
	fail cancelled-pending "job $JOB cancelled while pending passed the state check"
elif [[ "$why" != *CANCELLED* ]]; then
	fail cancelled-pending "unexpected state: $why"
else
	pass cancelled-pending "sbatch --wait status $rc, state check: $why, $(since "$t")"
fi

# A job that fails: its state and exit code say so (agipd-correct's 2).
t=$SECONDS
submit failing AGIPD_RUN=1 AGIPD_IN_FOLDER="$T/no-such-folder" AGIPD_OUT_FOLDER="$T/out-failing" -- \
	"${FIT[@]}" --output="$T/failing.out" "$TOP/jobs/correct.sbatch"
why=$(job_ok "$JOB") || true
if [ -z "$JOB" ]; then
	fail failing-job "sbatch: $(tr '\n' ' ' <"$T/failing.sbatch")"
elif [[ "$why" != *FAILED\ 2:0* ]]; then
	fail failing-job "expected FAILED 2:0, got: ${why:-COMPLETED}; sbatch status $SB_RC"
else
	pass failing-job "$why; sbatch --wait status $SB_RC, $(since "$t")"
fi

# The templates as written ask for more than this node has: refused at
# once (EnforcePartLimits), never left pending.
t=$SECONDS
(cd "$T/submit" && timeout 30 sbatch --wait --parsable "$TOP/jobs/correct.sbatch") </dev/null >"$T/big.sbatch" 2>&1
rc=$?
if [ "$rc" -eq 124 ]; then
	fail oversized-refused "sbatch --wait hung"
elif [ "$rc" -ne 0 ] && grep -qi 'error' "$T/big.sbatch"; then
	pass oversized-refused "$(grep -i error "$T/big.sbatch" | head -n 1), $(since "$t")"
else
	fail oversized-refused "sbatch status $rc: $(tr '\n' ' ' <"$T/big.sbatch")"
fi

# ---------------------------------------------------------------- shutdown
t=$SECONDS
shutdown_cluster
left=
for p in "$MUNGE_PID" "$CTLD_PID" "${SLURMD_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && left+=" $p"; done
left+=$(leftovers | tr '\n' ' ')
if [ -n "${left// /}" ]; then
	fail cleanup "processes left: $left"
elif ! ports_free "$CTLD_PORT" $((NNODES + 1)); then
	fail cleanup "ports $CTLD_PORT-$((CTLD_PORT + NNODES)) still in use"
elif shm=$(find /dev/shm -maxdepth 1 -name "*$NPFX[0-9]*" 2>/dev/null) && [ -n "$shm" ]; then
	fail cleanup "shared-memory files of the virtual nodes left: $(printf '%s' "$shm" | tr '\n' ' ')"
	printf '%s\n' "$shm" | while read -r f; do rm -f "$f"; done
else
	pass cleanup "daemons stopped, no job processes left, no /dev/shm file of the nodes, $(since "$t")"
fi
echo "slurm tests: $((SECONDS - T0)) s in all"
finish
