#!/usr/bin/env bash
# Launch a ddpinn case on N ranks on a workstation or inside a Slurm allocation.
#
#   launch/run.sh -n 4 cases/poisson2d.toml [--set key=value ...] [--resume auto]
#
# Inside a Slurm allocation (SLURM_JOB_ID set and srun available) it uses
# `srun --mpi=${DDPINN_SRUN_MPI:-pmi2}`, elsewhere `mpiexec -n N` (MPICH or Open MPI; Open MPI
# run as root needs --allow-run-as-root, added automatically). DDPINN_LAUNCHER=mpiexec|srun
# forces one. With --gpus, every rank is bound to one GPU by launch/bind_gpu.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
usage() { echo "usage: $0 -n RANKS [--gpus] [--dry-run] CASE.toml [ddpinn run options...]" >&2; exit 2; }

ranks="" gpus=0 dry=0
while [ $# -gt 0 ]; do
    case "$1" in
        -n|--ranks) ranks=${2:-}; shift 2 ;;
        --gpus) gpus=1; shift ;;
        --dry-run) dry=1; shift ;;
        -h|--help) usage ;;
        *) break ;;
    esac
done
[ -n "$ranks" ] && [ $# -ge 1 ] || usage
[[ "$ranks" =~ ^[1-9][0-9]*$ ]] || { echo "$0: -n needs a positive integer, got '$ranks'" >&2; exit 2; }

python=${PYTHON:-python3}
launcher=${DDPINN_LAUNCHER:-}
if [ -z "$launcher" ]; then
    if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null 2>&1; then
        launcher=srun
    else
        launcher=mpiexec
    fi
fi

prog=("$python" -m ddpinn.cli run "$@")
[ "$gpus" = 1 ] && prog=("$here/bind_gpu.sh" "${prog[@]}") && prog+=(--set 'parallel.device="cuda"')

case "$launcher" in
    srun) cmd=(srun --mpi="${DDPINN_SRUN_MPI:-pmi2}" -n "$ranks" "${prog[@]}") ;;
    mpiexec)
        command -v mpiexec >/dev/null 2>&1 || { echo "$0: mpiexec not found (pip install mpich)" >&2; exit 2; }
        extra=()
        if mpiexec --version 2>&1 | grep -qi "open mpi" && [ "$(id -u)" = 0 ]; then
            extra=(--allow-run-as-root)
        fi
        cmd=(mpiexec "${extra[@]}" -n "$ranks" "${prog[@]}") ;;
    *) echo "$0: DDPINN_LAUNCHER must be mpiexec or srun, got '$launcher'" >&2; exit 2 ;;
esac

echo "[ddpinn launch] ${cmd[*]}" >&2
[ "$dry" = 1 ] && exit 0
exec "${cmd[@]}"
