#!/bin/sh
# tests/node-agent.sh HOST COMMAND... - the remote shell that mpirun's
# `--mca plm_rsh_agent` runs to start its daemon on HOST, for a virtual
# cluster on one machine: COMMAND (a shell command line, as ssh gets it)
# runs in a new UTS namespace whose host name is HOST, so that Open MPI
# sees HOST as a node of its own (its shared-memory segments, node
# communicator and locality are per host name).  Needs root (unshare).
#   mpirun --host n1:2,n2:2 --mca plm_rsh_agent tests/node-agent.sh ...
host=$1
shift
exec unshare --uts /bin/sh -c 'hostname "$1" || exit 1; shift; exec /bin/sh -c "$*"' sh "$host" "$@"
