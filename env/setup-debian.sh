#!/usr/bin/env bash
# env/setup-debian.sh - install every Debian package that building, the demo,
# the tests and the benchmark need.  Non-interactive and idempotent: when all
# is installed it returns in well under a second.
#
#   env/setup-debian.sh              install what is missing
#   env/setup-debian.sh --if-missing same (the form the Makefile uses)
#   env/setup-debian.sh --list       print the package list and exit
set -eu
PACKAGES=(
	build-essential pkg-config make git
	openmpi-bin libopenmpi-dev
	libhdf5-openmpi-dev hdf5-tools
	zlib1g-dev libisal-dev libdeflate-dev libpng-dev libyaml-dev
	python3 python3-h5py python3-numpy python3-matplotlib python3-yaml
	valgrind
	slurmctld slurmd slurm-client munge
)
case "${1:-}" in
--list) printf '%s\n' "${PACKAGES[@]}"; exit 0 ;;
--if-missing | "") ;;
*) echo "usage: $0 [--if-missing|--list]" >&2; exit 2 ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
	# dpkg-query prints "install ok installed" for a package that is present.
	s=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$s" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "env/setup-debian.sh: installing ${missing[*]}" >&2
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
