#!/usr/bin/env bash
# Install a single-node Slurm (slurmctld + slurmd + client tools) and MUNGE from the distro
# (Debian/Ubuntu), for tests/slurm and CI. Idempotent: a second run only prints the versions.
#
# Nothing is configured or started here: tests/slurm/slurm_cluster.py starts a PRIVATE cluster
# (its own munge key and socket, its own slurm.conf, free ports, state under a temp dir), so the
# system-wide /etc/slurm and /etc/munge are never used.
#
# Packages:
#   slurmctld slurmd slurm-client   the daemons and sbatch/srun/squeue/scontrol (= slurm-wlm)
#   slurm-wlm-basic-plugins         auth/munge, select/cons_tres, proctrack/linuxproc and the
#                                   mpi/pmi2 plugin that `srun --mpi=pmi2` needs
#   munge                           munged + mungekey
# Not installed: PMIx. Debian's mpi/pmix plugin dlopens pmix2/lib/libpmix.so, which only
# libpmix-dev provides (libpmix2 alone is not enough), so the daemons log "mpi/pmix_v4: can not
# load PMIx library" at start. Harmless: the MPICH wheel uses --mpi=pmi2, which needs nothing.
set -euo pipefail

pkgs=(slurm-wlm slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge)

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null; then
        echo "install_slurm: no apt-get here; install Slurm (slurmctld, slurmd, client, the mpi/pmi2" \
            "plugin) and MUNGE with this system's package manager" >&2
        exit 1
    fi
    if [[ $(id -u) -ne 0 ]]; then
        SUDO=sudo
    else
        SUDO=
    fi
    echo "install_slurm: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Do not let the packages' maintainer scripts start system-wide munged/slurm daemons
    # (containers without systemd would otherwise get a stray munged from its init script).
    # Only install a policy-rc.d if there is none, and only remove the one we installed.
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
        own_policy=1
    fi
    trap '[[ $own_policy == 1 ]] && $SUDO rm -f "$policy"' EXIT
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

# (sbatch/srun --version need a slurm.conf, so the client version comes from dpkg)
echo "install_slurm: $(slurmctld -V) (slurmctld) | $(slurmd -V) (slurmd)" \
    "| slurm-client $(dpkg-query -W -f='${Version}' slurm-client) | $(munged --version 2>&1 | head -n1)"
plugdir=$(dirname "$(dpkg -L slurm-wlm-basic-plugins | grep -m1 '/mpi_pmi2.so$')")
plugins=("$plugdir"/mpi_*.so)
plugins=("${plugins[@]##*/}")
echo "install_slurm: mpi plugins in $plugdir: ${plugins[*]}"
