#!/bin/bash
# jobs/submit-run.sh - split a large AGIPD run into batches of sequences and
# submit them as one job array of jobs/correct-array.sbatch.
#
#   jobs/submit-run.sh [options] [-- agipd-correct options]
#
#   --seqs-per-task B   sequences per array task [default: $AGIPD_SEQS_PER_TASK or 4]
#   --max-parallel M    at most M array tasks at once (--array=...%M) [default: no cap]
#   --sbatch "OPTS"     more sbatch options, e.g. "--nodes=2 --time=00:30:00"
#                       [default: $AGIPD_SBATCH_OPTS]
#   --wait              wait for the whole array to end (sbatch --wait); the
#                       exit status is then the array's highest
#   --dry-run           print the sbatch command, submit nothing
#
# The agipd-correct options (and the AGIPD_* variables of jobs/agipd-job.sh)
# name the run: --run and --in-folder are needed here to count the
# sequences (--sequences LIST picks some).  Prints the array's job id on
# standard output.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2034  # read by agipd-job.sh
AGIPD_JOBS_DIR=$here
# shellcheck source=jobs/agipd-job.sh
. "$here/agipd-job.sh"

usage() {
	sed -n '2,20s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

per=${AGIPD_SEQS_PER_TASK:-4}
maxpar=
sbatch_opts=${AGIPD_SBATCH_OPTS:-}
wait=()
dry=0
while [ $# -gt 0 ]; do
	case "$1" in
	--seqs-per-task) per=${2:?}; shift 2 ;;
	--max-parallel) maxpar=${2:?}; shift 2 ;;
	--sbatch) sbatch_opts=${2?}; shift 2 ;;
	--wait) wait=(--wait); shift ;;
	--dry-run) dry=1; shift ;;
	--) shift; break ;;
	-h | --help) usage ;;
	*) break ;;
	esac
done
[[ "$per" =~ ^[1-9][0-9]*$ ]] || agipd_die "--seqs-per-task $per: expected a positive number"
[ -z "$maxpar" ] || [[ "$maxpar" =~ ^[1-9][0-9]*$ ]] || agipd_die "--max-parallel $maxpar: expected a positive number"

agipd_env_args
args=("${AGIPD_ARGS[@]}" "$@")
in=$(agipd_arg in-folder "${args[@]}")
run=$(agipd_arg run "${args[@]}")
[ -n "$in" ] && [ -n "$run" ] || agipd_die "--run and --in-folder (or AGIPD_RUN and AGIPD_IN_FOLDER) are needed"
[[ "$run" =~ ^[0-9]+$ ]] || agipd_die "--run $run: not a run number"

found=$(agipd_raw_sequences "$in" "$run") || exit 2
[ -n "$found" ] || agipd_die "$in: no raw files of run $run"
want=$(agipd_arg sequences "${args[@]}")
if [ -n "$want" ] && [ "$want" != all ]; then
	list=$(agipd_expand_list "$want") || exit 2
	seqs=$(for s in $list; do case " $found " in *" $s "*) echo "$s" ;; esac; done | paste -sd' ' -)
	[ -n "$seqs" ] || agipd_die "--sequences $want: none of them is in the run (found: $found)"
else
	seqs=$found
fi
read -r -a all <<<"$seqs"
n=${#all[@]}
ntasks=$(((n + per - 1) / per))
array="0-$((ntasks - 1))${maxpar:+%$maxpar}"

read -r -a extra <<<"$sbatch_opts"
cmd=(sbatch --parsable "${wait[@]}" --array="$array"
	--export="ALL,AGIPD_SEQ_LIST=${all[*]},AGIPD_SEQS_PER_TASK=$per,AGIPD_JOBS_DIR=$here"
	"${extra[@]}" "$here/correct-array.sbatch" "$@")
echo "submit-run: run $run: $n sequence(s) (${all[*]}), $per per task: $ntasks array task(s)" >&2
if [ "$dry" = 1 ]; then
	printf '%q ' "${cmd[@]}"
	echo
	exit 0
fi
"${cmd[@]}"
