# shellcheck shell=bash
# env/cluster.sh - load what agipd-correct needs on a cluster with
# environment modules (Lmod or Tcl modules):
#
#   source env/cluster.sh          # then: make, sbatch jobs/correct.sbatch ...
#
# Sourced, never run.  Harmless where there is no `module` command (a
# workstation, a container, the Debian packages of env/setup-debian.sh): it
# says so and does nothing.  It never exits the calling shell and keeps its
# options (set -e/-u).  The job templates in jobs/ source it by themselves
# when `module` exists (AGIPD_ENV=FILE names another file).
#
# Module names differ between sites: set AGIPD_MODULE_LIST to your site's,
# blank-separated, e.g.
#   AGIPD_MODULE_LIST="gcc/12 openmpi/4.1.4 hdf5-mpi/1.10.8 zlib isa-l libdeflate" source env/cluster.sh
# Each entry may list alternatives separated by '|': the first that loads
# wins.  A module that no alternative provides is reported and skipped
# (zlib, ISA-L and libdeflate are optional: the build uses what it finds).
# With Spack instead of modules: spack env activate env/  (env/spack.yaml).

agipd_cluster_env() {
	local list entry alt alts loaded missing=""
	if ! type module >/dev/null 2>&1; then
		echo "env/cluster.sh: no 'module' command here; nothing loaded (see env/setup-debian.sh or env/spack.yaml)" >&2
		return 0
	fi
	list=${AGIPD_MODULE_LIST:-"openmpi/4.1.4|openmpi/4.1|openmpi|mpi/openmpi-x86_64
hdf5-mpi/1.10.8|hdf5/1.10.8-mpi|phdf5/1.10.8|hdf5-openmpi|phdf5|hdf5-mpi|hdf5/1.10.8|hdf5
zlib
isa-l|isal|libisal
libdeflate"}
	for entry in $list; do
		loaded=""
		IFS='|' read -r -a alts <<<"$entry"
		for alt in "${alts[@]}"; do
			# Lmod and Environment Modules 4+ fail on an unknown name.
			if module load "$alt" >/dev/null 2>&1; then
				loaded=$alt
				break
			fi
		done
		if [ -n "$loaded" ]; then
			echo "env/cluster.sh: loaded $loaded" >&2
		else
			missing="$missing ${entry%%|*}"
		fi
	done
	[ -z "$missing" ] || echo "env/cluster.sh: not found:$missing (set AGIPD_MODULE_LIST)" >&2
	# The parallel HDF5 must be the MPI build: h5pcc, or hdf5-openmpi in pkg-config.
	if ! command -v h5pcc >/dev/null 2>&1 && ! pkg-config --exists hdf5-openmpi 2>/dev/null; then
		echo "env/cluster.sh: warning: no parallel HDF5 (h5pcc) found" >&2
	fi
	return 0
}
agipd_cluster_env
unset -f agipd_cluster_env
