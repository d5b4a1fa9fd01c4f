#!/usr/bin/env bash
# Installs imse_seg into a fresh virtual environment that already holds an MMSegmentation 1.2 stack, as a user
# has one, and fails if that changed torch, mmengine, mmcv / mmcv-lite or mmsegmentation (issue 20).
#
#     bash tools/check_install_into_mmseg.sh            # PYTHON=python3.11 to choose the interpreter
#
# The stack: torch 2.13.0 (the CPU build; the machines of this project keep its file on disk), mmengine
# 0.10.7, mmcv-lite 2.1.0 (full mmcv 2.1 does not build against current torch) and mmsegmentation 1.2.2. It
# then runs `pip install -e <repo>`, compares `pip freeze` before and after, imports imse_seg and runs a dry
# run of the demo config (model, method and pipeline on a random image). Both freezes and the install log
# are kept in $KEEP (default: a temporary folder, printed at the end). Exit status 1 names what changed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
KEEP="${KEEP:-$(mktemp -d)}"
trap 'rm -rf "$WORK"' EXIT
STACK=(torch==2.13.0 mmengine==0.10.7 mmcv-lite==2.1.0 mmsegmentation==1.2.2)
WATCHED='^(torch|mmengine|mmcv|mmcv-lite|mmsegmentation)=='

"$PYTHON" -m venv "$WORK/venv"
VENV_PYTHON="$WORK/venv/bin/python"
pip() { "$VENV_PYTHON" -m pip --disable-pip-version-check "$@"; }

echo "== the user's stack: ${STACK[*]}"
pip install -q "${STACK[@]}"
pip freeze --all > "$KEEP/freeze_before.txt"

echo "== pip install -e $REPO"
pip install -e "$REPO" > "$KEEP/install.log" 2>&1 || { tail -20 "$KEEP/install.log"; exit 1; }
pip freeze --all --exclude-editable > "$KEEP/freeze_after.txt"

before="$(grep -iE "$WATCHED" "$KEEP/freeze_before.txt" | sort)"
after="$(grep -iE "$WATCHED" "$KEEP/freeze_after.txt" | sort)"
echo "$before"
if [ "$before" != "$after" ]; then
    echo "FAIL: installing imse_seg changed the stack:"
    diff <(echo "$before") <(echo "$after") || true
    exit 1
fi
echo "== unchanged; installed or upgraded beside them: $(comm -13 <(sort "$KEEP/freeze_before.txt") \
    <(sort "$KEEP/freeze_after.txt") | tr '\n' ' ')"

echo "== import and dry run"
cd "$REPO"
"$VENV_PYTHON" -c 'import imse_seg, torch; print("imse_seg", imse_seg.__version__, "on torch", torch.__version__)'
"$VENV_PYTHON" tools/adapt.py configs/demo_ctta.py --dry-run > "$KEEP/dry_run.log" 2>&1 \
    || { tail -20 "$KEEP/dry_run.log"; exit 1; }
grep -o "dry run: .*" "$KEEP/dry_run.log"
echo "OK: the stack is unchanged and imse_seg runs in it (freezes and logs in $KEEP)"
