#!/usr/bin/env bash
# The kit's single entrypoint, on the grader and on a laptop.
#   ./run.sh          train (from pretrain/checkpoints/$MODEL.pt if it exists; PRETRAIN=on makes one first), export,
#                     evaluate, print the table
#                     (a budget under 30 minutes trains once on the dataset, with submission/configs/short/$MODEL.gin)
#   ./run.sh test     run the test suite (slow tests excluded; `./run.sh test -m slow` runs them)
#   ./run.sh setup    only create or update the local virtualenv
# When AICROWD_IS_GRADING (or KIT_NO_VENV, e.g. in conda or Docker) is set, the environment is used as given; otherwise a local virtualenv (.venv, or $KIT_VENV)
# is created on first use and updated whenever requirements*.txt change. Variables: see README.md.
set -euo pipefail
# Relative paths in the variables (AICROWD_OUTPUT_PATH, DISENTANGLEMENT_LIB_DATA, PRETRAINED_DIR, h5:PATH) are the
# caller's: the pipeline resolves them against the caller's directory, not the kit's.
caller_dir="$PWD"
cd "$(dirname "$0")"

venv="${KIT_VENV:-.venv}"

# pip warns once per package about index locations some machines configure but lack; keep real errors.
pip_quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

setup_venv() {
    local stamp_file="$venv/.kit-requirements.sha256" want
    want=$(cat requirements.txt requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
    if [[ -x "$venv/bin/python" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$want" ]]; then
        return 0
    fi
    local python="${KIT_PYTHON:-}"
    if [[ -z "$python" ]]; then
        for candidate in python3.11 python3; do
            if command -v "$candidate" >/dev/null 2>&1; then python="$candidate"; break; fi
        done
    fi
    if [[ -z "$python" ]] || ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
        echo "error: Python 3.11 is required for the pinned stack (found: ${python:-none}); set KIT_PYTHON to a python3.11" >&2
        exit 2
    fi
    echo "setting up $venv (first run or requirements changed; takes a few minutes)..." >&2
    rm -f "$stamp_file"
    [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
    pip_quiet "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
    # disentanglement-lib's metadata pins TF 1.14; its metrics need none of that, so it goes in without dependencies.
    pip_quiet "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
    echo "$want" > "$stamp_file"
}

if [[ -n "${AICROWD_IS_GRADING:-}" || -n "${KIT_NO_VENV:-}" ]]; then
    py=python
else
    setup_venv
    py="$venv/bin/python"
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

case "${1:-}" in
    test)  shift; exec "$py" -m pytest "$@" ;;
    setup) exit 0 ;;
    "")    KIT_CALLER_DIR="$caller_dir" exec "$py" -m submission.pipeline ;;
    *)     echo "error: unknown command '$1'; usage: ./run.sh [test [pytest args...] | setup]" >&2; exit 2 ;;
esac
