#!/usr/bin/env bash
# Install the optional Horovod backend for ddpinn (Horovod 0.28.1, PyTorch + MPI, no Gloo).
#
# Horovod 0.28.1's sdist asks for C++14, which torch >= 2.1 headers reject, so we
# patch CMAKE_CXX_STANDARD to 17 and build a wheel against the MPI that the Python
# environment provides (normally the `mpich` PyPI wheel, whose mpicc/mpicxx/mpiexec
# live next to the interpreter). Built wheels are cached per torch version:
#
#   ${DDPINN_WHEEL_CACHE:-$HOME/.cache/ddpinn/wheels}/torch-<torch.__version__>/horovod-0.28.1-*.whl
#
# Steps: (1) exit if `import horovod.torch` already works; (2) else install a cached
# wheel; (3) else download the sdist, patch, build (~5 min on 2 cores), cache, install.
# Every install is verified with hvd.init() and a 2-rank mpiexec allreduce.
#
# Environment knobs:
#   PYTHON                      interpreter to install into (default: python3)
#   DDPINN_WHEEL_CACHE          wheel cache root (default: ~/.cache/ddpinn/wheels)
#   DDPINN_BUILD_JOBS           parallel compile jobs (default: nproc)
#   DDPINN_HOROVOD_SKIP_MPIRUN  set to 1 to skip the 2-rank mpiexec check
#   MPICC                       MPI C compiler wrapper to build against (default: auto)
set -euo pipefail

HVD_VERSION=0.28.1
PYTHON=${PYTHON:-python3}
CACHE_ROOT=${DDPINN_WHEEL_CACHE:-$HOME/.cache/ddpinn/wheels}

log() { echo "[horovod] $*"; }
die() { echo "[horovod] ERROR: $*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null 2>&1 || die "python interpreter '$PYTHON' not found"
PIP=("$PYTHON" -m pip)

# ---------------------------------------------------------------------------
# 1. Already installed?
# ---------------------------------------------------------------------------
if "$PYTHON" -c "import horovod.torch" >/dev/null 2>&1; then
    ver=$("$PYTHON" -c "import horovod; print(horovod.__version__)")
    log "horovod.torch already importable (horovod $ver); nothing to do"
    exit 0
fi

TORCH_VERSION=$("$PYTHON" -c "import torch; print(torch.__version__)" 2>/dev/null) \
    || die "torch is not importable with $PYTHON; install torch first"
PY_TAG=$("$PYTHON" -c "import sys; print('cp%d%d' % sys.version_info[:2])")
SCRIPTS_DIR=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_path('scripts'))")
CACHE_DIR="$CACHE_ROOT/torch-$TORCH_VERSION"
log "python: $(command -v "$PYTHON") ($PY_TAG), torch $TORCH_VERSION"
log "wheel cache: $CACHE_DIR"

# mpiexec belonging to this environment (mpich wheel puts it next to python).
if [[ -x "$SCRIPTS_DIR/mpiexec" ]]; then
    MPIEXEC="$SCRIPTS_DIR/mpiexec"
else
    MPIEXEC=$(command -v mpiexec || true)
fi

ensure_runtime_deps() {
    # horovod's own runtime requirements (we install the wheel with --no-deps so as
    # not to touch torch); only the missing ones are installed.
    local missing=()
    local pair mod pkg
    for pair in cloudpickle:cloudpickle psutil:psutil yaml:pyyaml packaging:packaging cffi:cffi; do
        mod=${pair%%:*}; pkg=${pair##*:}
        "$PYTHON" -c "import $mod" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "installing missing horovod runtime deps: ${missing[*]}"
        "${PIP[@]}" install -q "${missing[@]}"
    fi
}

install_wheel() {
    log "installing $1"
    "${PIP[@]}" install -q --no-deps --force-reinstall "$1"
    ensure_runtime_deps
}

verify() {
    log "verifying: import horovod.torch; hvd.init()"
    "$PYTHON" -c "
import horovod.torch as hvd
hvd.init()
print('[horovod] size=%d mpi_built=%s mpi_enabled=%s gloo_built=%s nccl_built=%s'
      % (hvd.size(), hvd.mpi_built(), hvd.mpi_enabled(), hvd.gloo_built(), hvd.nccl_built()))
assert hvd.mpi_built(), 'horovod was built without MPI'
" || return 1
    if [[ "${DDPINN_HOROVOD_SKIP_MPIRUN:-0}" == 1 ]]; then
        log "skipping 2-rank mpiexec check (DDPINN_HOROVOD_SKIP_MPIRUN=1)"
        return 0
    fi
    [[ -n "$MPIEXEC" ]] || { echo "[horovod] no mpiexec found for the 2-rank check" >&2; return 1; }
    log "verifying: $MPIEXEC -n 2 allreduce(ones(3)*rank, Sum) == ones(3)"
    timeout 180 "$MPIEXEC" -n 2 "$PYTHON" -c "
import horovod.torch as hvd, torch
hvd.init()
t = hvd.allreduce(torch.ones(3) * hvd.rank(), op=hvd.Sum)
print('[horovod]   rank %d: %s' % (hvd.rank(), t), flush=True)
assert hvd.size() == 2 and torch.equal(t, torch.ones(3)), t
" || return 1
    log "OK: horovod $HVD_VERSION works with torch $TORCH_VERSION"
}

# ---------------------------------------------------------------------------
# 2. Cached wheel?
# ---------------------------------------------------------------------------
shopt -s nullglob
cached=("$CACHE_DIR"/horovod-"$HVD_VERSION"-"$PY_TAG"-*.whl)
shopt -u nullglob
if ((${#cached[@]})); then
    whl=${cached[0]}
    log "found cached wheel $whl"
    install_wheel "$whl"
    if verify; then
        exit 0
    fi
    log "cached wheel failed verification; moving it aside and rebuilding"
    mv -f "$whl" "$whl.broken"
fi

# ---------------------------------------------------------------------------
# 3. Build from the sdist.
# ---------------------------------------------------------------------------
log "no usable cached wheel; building horovod $HVD_VERSION from source"

command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
    || die "no C++ compiler (c++/g++) found; e.g. apt-get install g++"

# MPI: use the compiler wrappers of this environment's MPI (the mpich wheel installs
# mpicc/mpicxx next to python). Put the *real* bin dir first on PATH (not a pyenv
# shim) so CMake's FindMPI picks the same MPI that mpi4py and mpiexec use.
if [[ -z "${MPICC:-}" ]]; then
    if [[ -x "$SCRIPTS_DIR/mpicc" ]]; then
        MPICC="$SCRIPTS_DIR/mpicc"
    elif command -v mpicc >/dev/null 2>&1; then
        MPICC=$(command -v mpicc)
    else
        die "no mpicc found; install an MPI (e.g. '$PYTHON -m pip install mpich')"
    fi
fi
MPI_BIN=$(dirname "$(readlink -f "$MPICC")")
export PATH="$MPI_BIN:$PATH"
export MPI_HOME=${MPI_HOME:-$(dirname "$MPI_BIN")}
export MPICC="$MPI_BIN/$(basename "$MPICC")"
[[ -x "$MPI_BIN/mpicxx" ]] && export MPICXX="$MPI_BIN/mpicxx"
log "MPI: $MPICC -> $("$MPICC" -show 2>/dev/null || echo '?')"

# CMake >= 3.13 is required by horovod; pip's cmake if missing/too old (<4: old subprojects).
cmake_ok() {
    local v
    v=$("$1" --version 2>/dev/null | sed -n 's/^cmake version \([0-9.]*\).*/\1/p') || return 1
    [[ -n "$v" ]] && "$PYTHON" -c "import sys; v=tuple(map(int,'$v'.split('.')[:2])); sys.exit(0 if v>=(3,13) else 1)"
}
CMAKE_BIN=$(command -v cmake || true)
if [[ -z "$CMAKE_BIN" ]] || ! cmake_ok "$CMAKE_BIN"; then
    log "cmake missing or < 3.13; installing cmake from PyPI"
    "${PIP[@]}" install -q "cmake>=3.18,<4"
    CMAKE_BIN="$SCRIPTS_DIR/cmake"
    cmake_ok "$CMAKE_BIN" || die "could not get a usable cmake"
fi
export HOROVOD_CMAKE="$CMAKE_BIN"
log "cmake: $CMAKE_BIN ($("$CMAKE_BIN" --version | head -n1))"

# Build requirements (we build with --no-build-isolation to compile against the installed torch).
for mod in setuptools wheel packaging; do
    "$PYTHON" -c "import $mod" >/dev/null 2>&1 || "${PIP[@]}" install -q "$mod"
done
# horovod's setup.py lists its runtime deps as setup_requires too; have them installed
# up front so setuptools does not fetch them as eggs in the middle of the build.
ensure_runtime_deps

mkdir -p "$CACHE_DIR" "$CACHE_ROOT/logs"
LOG="$CACHE_ROOT/logs/horovod-$HVD_VERSION-torch-$TORCH_VERSION-$(date +%Y%m%d-%H%M%S).log"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ddpinn-horovod.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
log "build log: $LOG"

fail() {
    echo "[horovod] ERROR: $* -- last lines of $LOG:" >&2
    tail -n 60 "$LOG" >&2 || true
    exit 1
}

log "downloading horovod==$HVD_VERSION sdist"
"${PIP[@]}" download --no-deps --no-binary :all: "horovod==$HVD_VERSION" -d "$WORK/sdist" >>"$LOG" 2>&1 \
    || fail "pip download failed"
sdist=$(ls "$WORK"/sdist/horovod-"$HVD_VERSION".tar.gz 2>/dev/null) || fail "sdist not found after download"
tar -xzf "$sdist" -C "$WORK"
SRC="$WORK/horovod-$HVD_VERSION"
[[ -f "$SRC/setup.py" ]] || fail "unexpected sdist layout"

log "patching C++ standard 14 -> 17 (torch >= 2.1 needs C++17)"
mapfile -t to_patch < <(cd "$SRC" && grep -rlE --include=CMakeLists.txt \
    'set\(CMAKE_CXX_STANDARD 1[14]\)' . | grep -v '^\./third_party/' || true)
((${#to_patch[@]})) || fail "no CMAKE_CXX_STANDARD 14 found to patch (sdist changed?)"
for f in "${to_patch[@]}"; do
    sed -i -E 's/set\(CMAKE_CXX_STANDARD 1[14]\)/set(CMAKE_CXX_STANDARD 17)/' "$SRC/$f"
    log "  patched ${f#./}"
done
if (cd "$SRC" && grep -nE 'CMAKE_CXX_STANDARD 1[14]\b' CMakeLists.txt horovod/torch/CMakeLists.txt); then
    fail "C++14 still requested after patching"
fi

JOBS=${DDPINN_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}
log "building wheel (MPI + PyTorch, no Gloo/TF/MXNet; $JOBS jobs; takes several minutes)"
start=$(date +%s)
(
    cd "$SRC"
    export HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_GLOO=1 \
           HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 \
           MAKEFLAGS="-j$JOBS"
    "${PIP[@]}" wheel -v --no-build-isolation --no-deps . -w "$WORK/dist"
) >>"$LOG" 2>&1 || fail "wheel build failed after $(( $(date +%s) - start ))s"
log "build finished in $(( $(date +%s) - start ))s"

shopt -s nullglob
built=("$WORK"/dist/horovod-"$HVD_VERSION"-*.whl)
shopt -u nullglob
((${#built[@]} == 1)) || fail "expected exactly one built wheel, found ${#built[@]}"
whl="$CACHE_DIR/$(basename "${built[0]}")"
cp "${built[0]}" "$whl.tmp.$$" && mv -f "$whl.tmp.$$" "$whl"
log "cached wheel: $whl"

install_wheel "$whl"
verify || die "installed horovod failed verification (build log: $LOG)"
