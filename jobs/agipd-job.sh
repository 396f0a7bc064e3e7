# shellcheck shell=bash
# jobs/agipd-job.sh - shared by the Slurm templates in this folder; sourced,
# never run.  One place for: where the programs are, which agipd-correct
# options come from the environment, which launcher to use, and the MPI and
# heap settings.
#
# Environment (every variable is optional; arguments given to a template are
# passed to agipd-correct after these and win, since the last of a repeated
# option counts):
#   AGIPD_RUN               --run N
#   AGIPD_IN_FOLDER         --in-folder DIR (the raw run is DIR/rNNNN or DIR)
#   AGIPD_OUT_FOLDER        --out-folder DIR (created when missing)
#   AGIPD_CONSTANTS_FOLDER  --constants-folder DIR
#                           [default: $AGIPD_IN_FOLDER/constants, the layout
#                           agipd-simulate writes]
#   AGIPD_MODULES           --modules LIST [default: all found]
#   AGIPD_SEQUENCES         --sequences LIST [default: all found]
#   AGIPD_CONFIG            --config FILE (key = value; see agipd-correct --help)
#   AGIPD_WRITER            --writer collective|serial|null [default: collective]
#   AGIPD_OVERWRITE=1       --overwrite [default: keep complete outputs]
#   AGIPD_OPTIONS           more options, split on blanks, e.g.
#                           "--common-mode --rel-gain --photon-energy 9.3"
#   AGIPD_NP                ranks [default: the job's tasks, SLURM_NTASKS]
#   AGIPD_LAUNCHER          srun | mpirun | auto [default: auto: srun when
#                           `srun --mpi=list` offers pmix, else mpirun]
#   AGIPD_OVERSUBSCRIBED    1 | 0 [default: 1 when a node gets more ranks than
#                           it has CPUs for the job]
#   AGIPD_CORRECT           the agipd-correct program [default: bin/ beside
#                           this folder, else agipd-correct on PATH]
#   AGIPD_ENV               a file to source first, e.g. env/cluster.sh
#                           [default: env/cluster.sh beside this folder, when
#                           the `module` command exists]

agipd_die() {
	echo "agipd-job: error: $*" >&2
	exit 2
}

agipd_log() {
	echo "agipd-job: $*"
}

# The folder this file is in.  Templates find it themselves (a batch script
# runs from a copy in Slurm's spool folder, so $0 does not tell).
AGIPD_JOBS_DIR=${AGIPD_JOBS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
AGIPD_TOP=$(cd "$AGIPD_JOBS_DIR/.." && pwd)

agipd_setup_env() {
	local f=${AGIPD_ENV:-}
	if [ -z "$f" ] && type module >/dev/null 2>&1 && [ -f "$AGIPD_TOP/env/cluster.sh" ]; then
		f=$AGIPD_TOP/env/cluster.sh
	fi
	if [ -n "$f" ]; then
		[ -f "$f" ] || agipd_die "AGIPD_ENV=$f: no such file"
		# shellcheck disable=SC1090
		. "$f"
	fi
}

# agipd_program NAME: the path of bin/NAME beside this folder, else NAME on PATH.
agipd_program() {
	local name=$1 var
	var=$(printf 'AGIPD_%s' "${name#agipd-}" | tr 'a-z-' 'A-Z_')
	if [ -n "${!var:-}" ]; then
		echo "${!var}"
	elif [ -x "$AGIPD_TOP/bin/$name" ]; then
		echo "$AGIPD_TOP/bin/$name"
	elif command -v "$name" >/dev/null 2>&1; then
		command -v "$name"
	else
		agipd_die "$name not found: build it (make), put it on PATH, or set $var"
	fi
}

# agipd_env_args: fills the array AGIPD_ARGS from the AGIPD_* variables.
agipd_env_args() {
	AGIPD_ARGS=()
	[ -n "${AGIPD_RUN:-}" ] && AGIPD_ARGS+=(--run "$AGIPD_RUN")
	[ -n "${AGIPD_IN_FOLDER:-}" ] && AGIPD_ARGS+=(--in-folder "$AGIPD_IN_FOLDER")
	[ -n "${AGIPD_OUT_FOLDER:-}" ] && AGIPD_ARGS+=(--out-folder "$AGIPD_OUT_FOLDER")
	if [ -n "${AGIPD_CONSTANTS_FOLDER:-}" ]; then
		AGIPD_ARGS+=(--constants-folder "$AGIPD_CONSTANTS_FOLDER")
	elif [ -n "${AGIPD_IN_FOLDER:-}" ]; then
		AGIPD_ARGS+=(--constants-folder "$AGIPD_IN_FOLDER/constants")
	fi
	[ -n "${AGIPD_MODULES:-}" ] && AGIPD_ARGS+=(--modules "$AGIPD_MODULES")
	[ -n "${AGIPD_SEQUENCES:-}" ] && AGIPD_ARGS+=(--sequences "$AGIPD_SEQUENCES")
	[ -n "${AGIPD_CONFIG:-}" ] && AGIPD_ARGS+=(--config "$AGIPD_CONFIG")
	[ -n "${AGIPD_WRITER:-}" ] && AGIPD_ARGS+=(--writer "$AGIPD_WRITER")
	[ "${AGIPD_OVERWRITE:-0}" = 1 ] && AGIPD_ARGS+=(--overwrite)
	if [ -n "${AGIPD_OPTIONS:-}" ]; then
		local extra
		read -r -a extra <<<"$AGIPD_OPTIONS"
		AGIPD_ARGS+=("${extra[@]}")
	fi
	return 0
}

# agipd_arg NAME ARGS...: the value of the last --NAME VALUE (or --NAME=VALUE)
# in ARGS, or nothing.
agipd_arg() {
	local name=$1 v='' prev=''
	shift
	for a in "$@"; do
		[ "$prev" = "--$name" ] && v=$a
		case "$a" in --"$name"=*) v=${a#--"$name"=} ;; esac
		prev=$a
	done
	printf '%s' "$v"
}

# agipd_expand_list "0-2,5" -> "0 1 2 5"
agipd_expand_list() {
	local part lo hi out=()
	IFS=, read -r -a parts <<<"$1"
	for part in "${parts[@]}"; do
		case "$part" in
		*-*) lo=${part%-*} hi=${part#*-} ;;
		*) lo=$part hi=$part ;;
		esac
		[[ "$lo" =~ ^[0-9]+$ && "$hi" =~ ^[0-9]+$ ]] || agipd_die "bad list '$1' (expected e.g. 0-2,5)"
		for ((i = 10#$lo; i <= 10#$hi; i++)); do out+=("$i"); done
	done
	echo "${out[*]}"
}

# agipd_raw_sequences IN_FOLDER RUN: the sequence numbers of the run's raw
# files (any module), sorted, one line, blank-separated.
agipd_raw_sequences() {
	local in=$1 run=$2 dir
	dir=$(printf '%s/r%04d' "$in" "$((10#$run))")
	[ -d "$dir" ] || dir=$in
	[ -d "$dir" ] || agipd_die "$in: input folder does not exist"
	find "$dir" -maxdepth 1 -name "$(printf 'RAW-R%04d-AGIPD[0-9][0-9]-S[0-9][0-9][0-9][0-9][0-9].h5' "$((10#$run))")" \
		-printf '%f\n' | sed -n 's/.*-S\([0-9]*\)\.h5$/\1/p' | sort -u | sed 's/^0*\([0-9]\)/\1/' | tr '\n' ' ' |
		sed 's/ $//'
}

# agipd_ranks_per_node NP: the most ranks one node gets (block placement).
agipd_ranks_per_node() {
	local np=$1 nodes=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
	echo $(((np + nodes - 1) / nodes))
}

# agipd_cpus_per_node: CPUs this job may use on a node.
agipd_cpus_per_node() {
	local c=${SLURM_CPUS_ON_NODE:-}
	[ -n "$c" ] || c=$(nproc)
	echo "$c"
}

# agipd_pick_launcher: srun or mpirun.
agipd_pick_launcher() {
	case "${AGIPD_LAUNCHER:-auto}" in
	srun | mpirun) echo "$AGIPD_LAUNCHER" ;;
	auto)
		if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null 2>&1 &&
			srun --mpi=list 2>&1 | grep -qw pmix; then
			echo srun
		else
			echo mpirun
		fi
		;;
	*) agipd_die "AGIPD_LAUNCHER=$AGIPD_LAUNCHER: expected srun, mpirun or auto" ;;
	esac
}

# agipd_mpi_env NP: the settings the benchmarks found best.
agipd_mpi_env() {
	local np=$1 rpn cpn over
	rpn=$(agipd_ranks_per_node "$np")
	cpn=$(agipd_cpus_per_node)
	over=${AGIPD_OVERSUBSCRIBED:-}
	if [ -z "$over" ]; then
		over=0
		[ "$((rpn * ${SLURM_CPUS_PER_TASK:-1}))" -gt "$cpn" ] && over=1
	fi
	AGIPD_OVERSUBSCRIBED=$over
	# More ranks than cores: ranks waiting in MPI give their core away
	# instead of spinning (measured: the difference between scaling and not).
	[ "$over" = 1 ] && export OMPI_MCA_mpi_yield_when_idle=1
	# zlib state and chunk buffers are 0.1-1 MB: keep glibc from returning
	# them to the kernel after every chunk (agipd-correct also sets this with
	# mallopt; the tunables cover the libraries that start before main).
	export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824}
	# Root in a container or a test cluster: Open MPI refuses without these.
	if [ "$(id -u)" -eq 0 ]; then
		export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
	fi
	return 0
}

# agipd_launch NP [--nodes N] -- PROGRAM ARGS...: run PROGRAM on NP ranks
# with the launcher of agipd_pick_launcher; returns its exit status.
agipd_launch() {
	local np=$1 nodes='' launcher cmd=()
	shift
	if [ "${1:-}" = --nodes ]; then
		nodes=$2
		shift 2
	fi
	[ "${1:-}" = -- ] && shift
	agipd_mpi_env "$np"
	launcher=$(agipd_pick_launcher)
	case "$launcher" in
	srun)
		cmd=(srun --mpi=pmix --ntasks="$np" --kill-on-bad-exit=1)
		[ -n "$nodes" ] && cmd+=(--nodes="$nodes")
		[ -n "${SLURM_CPUS_PER_TASK:-}" ] && cmd+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
		[ "$np" -gt "${SLURM_NTASKS:-$np}" ] && cmd+=(--overcommit)
		;;
	mpirun)
		cmd=(mpirun -np "$np" -x GLIBC_TUNABLES)
		[ "$AGIPD_OVERSUBSCRIBED" = 1 ] && cmd+=(--oversubscribe --bind-to none)
		if [ -n "$nodes" ] && [ -n "${SLURM_JOB_NODELIST:-}" ]; then
			local hosts rpn
			rpn=$(((np + nodes - 1) / nodes))
			hosts=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n "$nodes" |
				sed "s/\$/:$rpn/" | paste -sd, -)
			cmd+=(--host "$hosts")
		fi
		;;
	esac
	agipd_log "launch: ${cmd[*]} $*"
	agipd_log "env: OMPI_MCA_mpi_yield_when_idle=${OMPI_MCA_mpi_yield_when_idle:-} GLIBC_TUNABLES=$GLIBC_TUNABLES"
	"${cmd[@]}" "$@"
}
