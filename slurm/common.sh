# shellcheck shell=bash
# Shared logic of the ddpinn sbatch templates (cpu.sbatch, gpu_multinode.sbatch, array.sbatch).
# Sourced, not run. It provides:
#
#   ddpinn_setup_env       OMP_NUM_THREADS / SRUN_CPUS_PER_TASK from --cpus-per-task, a summary
#   ddpinn_srun_run ARGS   srun --mpi=$DDPINN_SRUN_MPI python -m ddpinn.cli run ARGS, in the
#                          background; forwards USR1/TERM to it; on exit status 85 requeues the
#                          job; returns (exits with) ddpinn's status. After a requeue it first
#                          removes stale MPICH shared memory of the job (see below).
#
# Signals and requeue (why the step runs in the background):
#   --signal=B:USR1@60 makes Slurm send SIGUSR1 to the *batch shell only* 60 s before the time
#   limit. bash runs a trap only between commands, so the step runs in the background and the
#   shell sits in `wait`, which a trapped signal interrupts. The trap forwards the signal to
#   srun, which forwards it to every rank. ddpinn then checkpoints at the next step boundary
#   (all ranks agree) and exits with status 85 ("checkpointed, please requeue"); this script
#   runs `scontrol requeue $SLURM_JOB_ID`, and the requeued job (same job id, output appended
#   with --open-mode=append) continues from the newest checkpoint thanks to `--resume auto`.
#   SIGTERM (scancel, time limit, preemption) is forwarded too: ddpinn checkpoints within
#   KillWait if it can, and exits with 85 as well, but the job is NOT requeued then (the
#   job is ending because someone or something ended it; Slurm would even accept a requeue
#   of a job being cancelled, so `scancel` could never stop it). The script exits with 85.
#
# Settings (environment variables, all optional):
#   DDPINN_PYTHON     python interpreter with ddpinn installed      [python]
#   DDPINN_SRUN_MPI   srun's --mpi plugin: pmi2 for the MPICH wheel and most MPICH/Intel
#                     MPI builds, pmix for a PMIx-built Open MPI    [pmi2]
#   DDPINN_SRUN_ARGS  extra srun arguments (word-split), e.g. "--cpu-bind=cores"
#   DDPINN_NO_REQUEUE set to 1 to exit with 85 instead of requeueing

DDPINN_EXIT_REQUEUE=85

ddpinn_log() {
    printf '[ddpinn-slurm %s] %s\n' "$(date '+%F %T')" "$*" >&2
}

ddpinn_setup_env() {
    # One OpenMP/torch thread pool per rank, as wide as the rank's CPUs.
    if [[ -n ${SLURM_CPUS_PER_TASK:-} ]]; then
        export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK
        # Slurm 22.05+: srun no longer inherits --cpus-per-task from sbatch; this restores it.
        export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK
    else
        export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    fi
    ddpinn_log "job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?}:" \
        "${SLURM_NTASKS:-?} tasks, ${SLURM_CPUS_PER_TASK:-1} cpu(s)/task, OMP_NUM_THREADS=$OMP_NUM_THREADS"
}

# The pid of the running srun (for the traps), a flag that the traps set, and whether this
# shell got SIGTERM (then the job is ending by someone's will: it must not requeue itself).
_ddpinn_step_pid=
_ddpinn_trapped=0
_ddpinn_got_term=0

_ddpinn_forward() {
    local sig=$1
    _ddpinn_trapped=1
    [[ $sig == TERM ]] && _ddpinn_got_term=1
    if [[ -n $_ddpinn_step_pid ]] && kill -0 "$_ddpinn_step_pid" 2>/dev/null; then
        ddpinn_log "got SIG$sig: forwarding it to the job step (srun pid $_ddpinn_step_pid)"
        kill -s "$sig" "$_ddpinn_step_pid" 2>/dev/null || true
    else
        ddpinn_log "got SIG$sig (no running job step)"
    fi
}

# MPICH (the pip wheel among others) keeps each node's shared memory in
# /dev/shm/mpich_shm_<h>_<node> (and mpich_vci_<h>_<node>), where h is the 32-bit FNV-1a hash
# of the PMI job id, which under `srun --mpi=pmi2` is "<job id>.<step id>". A requeued job
# keeps its job id and numbers its steps from 0 again, so a segment left behind by a step of
# the previous run that was killed (SIGKILL after KillWait, preemption) poisons the new run's
# MPI_Init: "UCX ERROR failed to unpack address, invalid bandwidth 0.00", or a hang. So on a
# restart, one task per node first removes the segments of this job's steps 0..15 (none of
# them can be in use: the previous run has ended, and this run has started no MPI step yet).
_ddpinn_fnv1a() {
    local s=$1 h=2166136261 c i
    for ((i = 0; i < ${#s}; i++)); do
        printf -v c '%d' "'${s:i:1}"
        h=$(((h ^ c) * 16777619 & 0xffffffff))
    done
    printf '%x' "$h"
}

ddpinn_clean_stale_mpich_shm() {
    [[ ${SLURM_RESTART_COUNT:-0} -gt 0 && -n ${SLURM_JOB_ID:-} ]] || return 0
    local step pattern=""
    for step in $(seq 0 15); do
        pattern+=" /dev/shm/mpich_shm_$(_ddpinn_fnv1a "$SLURM_JOB_ID.$step")_*"
        pattern+=" /dev/shm/mpich_vci_$(_ddpinn_fnv1a "$SLURM_JOB_ID.$step")_*"
    done
    local nodes=${SLURM_JOB_NUM_NODES:-1}
    srun --nodes="$nodes" --ntasks="$nodes" --ntasks-per-node=1 --mpi=none \
        bash -c "rm -fv $pattern" 2>&1 | sed 's/^/[ddpinn-slurm] restart: /' >&2 || true
}

# JobState of this job (RUNNING, CANCELLED, TIMEOUT, ...); fails when scontrol cannot say.
_ddpinn_job_state() {
    local state
    state=$(scontrol -o show job "$SLURM_JOB_ID" 2>/dev/null | grep -o 'JobState=[A-Z_]*') || return 1
    printf '%s\n' "${state#JobState=}"
}

# `scontrol requeue` of the running job makes Slurm send SIGTERM to the batch step at once,
# which would also kill scontrol before it reports success: ignore TERM from here on (an
# ignored signal stays ignored in scontrol), then check the job's state if scontrol failed.
_ddpinn_requeue() {
    trap '' TERM
    scontrol requeue "$SLURM_JOB_ID" && return 0
    local restarts
    restarts=$(scontrol -o show job "$SLURM_JOB_ID" 2>/dev/null | grep -o 'Restarts=[0-9]*')
    [[ ${restarts#Restarts=} -gt ${SLURM_RESTART_COUNT:-0} ]]
}

ddpinn_srun_run() {
    local python=${DDPINN_PYTHON:-python}
    local mpi=${DDPINN_SRUN_MPI:-pmi2}
    local -a extra=()
    # shellcheck disable=SC2206  # word splitting of the user's extra srun arguments is wanted
    [[ -n ${DDPINN_SRUN_ARGS:-} ]] && extra=($DDPINN_SRUN_ARGS)

    trap '_ddpinn_forward USR1' USR1
    trap '_ddpinn_forward TERM' TERM

    ddpinn_clean_stale_mpich_shm

    ddpinn_log "srun --mpi=$mpi --kill-on-bad-exit=1${extra[*]:+ ${extra[*]}} $python -m ddpinn.cli run $*"
    # --kill-on-bad-exit: a rank that dies takes the step down at once (ddpinn also aborts).
    srun --mpi="$mpi" --kill-on-bad-exit=1 ${extra[@]+"${extra[@]}"} \
        "$python" -m ddpinn.cli run "$@" &
    _ddpinn_step_pid=$!

    # A trapped signal interrupts `wait` (status > 128) while srun still runs: wait again
    # (if srun ended meanwhile, the next `wait` returns its status at once).
    local rc state
    while :; do
        _ddpinn_trapped=0
        wait "$_ddpinn_step_pid"
        rc=$?
        ((_ddpinn_trapped && rc > 128)) || break
    done
    _ddpinn_step_pid=

    if ((rc == DDPINN_EXIT_REQUEUE)); then
        if [[ ${DDPINN_NO_REQUEUE:-0} == 1 ]]; then
            ddpinn_log "ddpinn checkpointed (status 85); DDPINN_NO_REQUEUE=1, not requeueing"
        elif [[ -z ${SLURM_JOB_ID:-} ]]; then
            ddpinn_log "ddpinn checkpointed (status 85) outside Slurm; nothing to requeue"
        elif ((_ddpinn_got_term)); then
            ddpinn_log "ddpinn checkpointed (status 85) after SIGTERM (scancel, time limit or" \
                "preemption): not requeueing. Resubmit the same command to continue from the" \
                "checkpoint (--resume auto)."
        elif state=$(_ddpinn_job_state) && [[ $state != RUNNING ]]; then
            ddpinn_log "ddpinn checkpointed (status 85) but job $SLURM_JOB_ID is $state: not" \
                "requeueing. Resubmit the same command to continue from the checkpoint."
        elif _ddpinn_requeue; then
            ddpinn_log "ddpinn checkpointed (status 85): job $SLURM_JOB_ID requeued; it resumes with --resume auto"
            exit 0
        else
            ddpinn_log "ddpinn checkpointed (status 85) but 'scontrol requeue $SLURM_JOB_ID' failed" \
                "(was it submitted with --no-requeue, or does the site set JobRequeue=0?)." \
                "Resubmit the same command: --resume auto continues from the checkpoint."
        fi
    elif ((rc != 0)); then
        ddpinn_log "ddpinn exited with status $rc"
    fi
    return "$rc"
}

# Where this directory is, from inside a batch job. sbatch runs a *copy* of the script from
# the spool directory, so "$(dirname "$0")" is useless there: the templates look for common.sh
# at $DDPINN_SLURM_DIR, then beside the submitted script (scontrol's Command=), then in
# $SLURM_SUBMIT_DIR/slurm. (Kept here as documentation; each template carries a copy of the
# lookup, since it must run before this file can be sourced.)
