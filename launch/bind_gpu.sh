#!/usr/bin/env bash
# Bind this rank to one GPU by its node-local rank, then run the command:
#
#   mpiexec -n 8 launch/bind_gpu.sh python -m ddpinn.cli run case.toml --set parallel.device="cuda"
#
# The local rank comes from Slurm (SLURM_LOCALID), MPICH/Hydra (MPI_LOCALRANKID), Open MPI
# (OMPI_COMM_WORLD_LOCAL_RANK) or PMI (PMI_LOCAL_RANK). With N visible GPUs rank r gets GPU
# r mod N; the GPU list is the one already visible (CUDA_VISIBLE_DEVICES), else all of them.
# ddpinn picks the GPU by node-local rank by itself as well; this helper is for sites that
# want each process to see exactly one device (e.g. for NCCL or CUDA-aware MPI).
set -euo pipefail

local_rank=${SLURM_LOCALID:-${MPI_LOCALRANKID:-${OMPI_COMM_WORLD_LOCAL_RANK:-${PMI_LOCAL_RANK:-}}}}
if [ -z "$local_rank" ]; then
    echo "bind_gpu.sh: no node-local rank in the environment (not started by srun/mpiexec?)" >&2
    exit 2
fi
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    IFS=, read -r -a gpus <<< "$CUDA_VISIBLE_DEVICES"
elif command -v nvidia-smi >/dev/null 2>&1; then
    mapfile -t gpus < <(nvidia-smi --query-gpu=index --format=csv,noheader)
else
    gpus=()
fi
if [ ${#gpus[@]} -eq 0 ]; then
    echo "bind_gpu.sh: no GPU visible on $(hostname)" >&2
    exit 2
fi
export CUDA_VISIBLE_DEVICES=${gpus[$((local_rank % ${#gpus[@]}))]}
exec "$@"
