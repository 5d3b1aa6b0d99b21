#!/usr/bin/env bash
# The wheels to carry to a device machine (issue 23): that machine reaches no package
# registry, and its image lacks some of pipefill's dependencies (simpy, pydantic, dask, ...).
# Downloads, for CPython 3.12 (PYVER) on Linux x86-64, the exact version this venv has of each
# requirement scripts/device_wheels.py lists (pipefill's dependencies less torch and the
# large packages the image holds; --all: those too), one pip download per package, into
# .whl/ (gitignored), with the pins in .whl/pins.txt. Then run the device check with
# carry [".whl"]: scripts/device_check.sh installs from them with pip --no-index.
#
#   bash scripts/device_wheels.sh            # into .whl/
#   DEST=/tmp/w bash scripts/device_wheels.sh --all
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DEST=${DEST:-.whl}
PYVER=${PYVER:-3.12}  # the device image's Python
LIMIT_MB=60   # a device call carries at most 64 MiB, the working tree included
new="$DEST.new"
rm -rf "$new" && mkdir -p "$new"
"$PY" scripts/device_wheels.py --python-version "$PYVER" "$@" > "$new/pins.txt"
failed=()
while read -r pin; do
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$new" "$pin" || failed+=("$pin")
done < "$new/pins.txt"
if [ ${#failed[@]} -gt 0 ]; then
  echo "error: no cp312 manylinux wheel for: ${failed[*]} (nothing replaced in $DEST)" >&2
  rm -rf "$new"
  exit 1
fi
rm -rf "$DEST" && mv "$new" "$DEST"
mb=$(( $(du -sk "$DEST" | cut -f1) / 1024 ))
echo "$(find "$DEST" -name '*.whl' | wc -l) wheels, ${mb} MiB in $DEST (pins in $DEST/pins.txt)"
if [ "$mb" -gt "$LIMIT_MB" ]; then
  echo "warning: over ${LIMIT_MB} MiB: a device call carries at most 64 MiB in all" >&2
fi
