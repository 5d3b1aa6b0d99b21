#!/usr/bin/env bash
# mypy over the pipefill namespace as it is installed (pipefill.sim -> sim/, ...): mypy does
# not follow the editable install's import hook, so it reads a view of the mapping made of
# symlinks to the files (errors name .typecheck/pipefill/sim/x.py for sim/x.py).
set -euo pipefail
cd "$(dirname "$0")/.."
view=.typecheck/pipefill
rm -rf .typecheck && mkdir -p "$view"
for pkg in sim exec traces reports cli probe; do cp -as "$PWD/$pkg" "$view/$pkg"; done
cp -as "$PWD"/api/*.py "$view/"  # the facade: pipefill/__init__.py and its modules
find "$view" -name __pycache__ -prune -exec rm -rf {} +
MYPYPATH=.typecheck "${MYPY:-mypy}" -p pipefill "$@"
MYPYPATH=.typecheck "${MYPY:-mypy}" tests bench "$@"
