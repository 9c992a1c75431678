#!/usr/bin/env bash
# Prepare deploy/wheelhouse/ on the host: a wheel for every runtime dependency of the project
# (pyproject.toml's [project].dependencies, pins included) plus setuptools to install the project
# itself and uv for `bentoml build`, and requirements.txt naming them. The Dockerfiles install from it with
# `pip install --no-index --find-links`, so an image build needs no package index (air-gapped,
# reproducible: the same wheels every build) and its dependency layers are cached until the
# wheelhouse changes.
#
#   deploy/scripts/prepare_wheelhouse.sh [PYTHON]     # PYTHON: a CPython 3.11 (default python3)
#
# The host's pip configuration is used as is: here it points at the local CPU torch wheel
# (`pip config list`); elsewhere add `--extra-index-url https://download.pytorch.org/whl/cpu`
# through PIP_EXTRA_INDEX_URL, or pip fetches the CUDA build of torch.
# Idempotent: skipped when requirements.txt is unchanged and the last run completed.
set -euo pipefail
cd "$(dirname "$0")/../.."

python=${1:-python3}
wheelhouse=deploy/wheelhouse
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$version" != 3.11 ]; then
    echo "prepare_wheelhouse: $python is Python $version; the images run CPython 3.11 (pass a python3.11)" >&2
    exit 1
fi

mkdir -p "$wheelhouse"
wanted=$("$python" - <<'PY'
import tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
# setuptools: to install the project itself. uv: `bentoml build` (the bento asset, in run containers)
# runs it and, when it is missing, pip-installs it from the index, which a build must not need.
print("\n".join([*deps, "setuptools>=68", "wheel", "uv==0.13.9"]))
PY
)
if [ -f "$wheelhouse/.complete" ] && [ "$(cat "$wheelhouse/requirements.txt" 2>/dev/null)" = "$wanted" ]; then
    echo "prepare_wheelhouse: $wheelhouse is up to date ($(ls "$wheelhouse"/*.whl | wc -l) wheels)"
    exit 0
fi
rm -f "$wheelhouse/.complete"
printf '%s\n' "$wanted" > "$wheelhouse/requirements.txt"
echo "prepare_wheelhouse: building wheels into $wheelhouse"
# (pip warns once per package about index folders of the host configuration that lack it: noise)
"$python" -m pip wheel --quiet --wheel-dir "$wheelhouse" --find-links "$wheelhouse" -r "$wheelhouse/requirements.txt" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
touch "$wheelhouse/.complete"
echo "prepare_wheelhouse: $(ls "$wheelhouse"/*.whl | wc -l) wheels, $(du -sh "$wheelhouse" | cut -f1)"
