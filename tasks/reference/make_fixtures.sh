#!/usr/bin/env bash
# Rebuild every committed reference fixture under Tests/UniFormerTests/Fixtures/ from scratch.
#
#   bash tasks/reference/make_fixtures.sh            # from anywhere in the checkout
#   SKIP_CHECK=1 bash tasks/reference/make_fixtures.sh   # without the upstream cross-check
#
# Needs the Python packages in tasks/reference/requirements.txt (pip install -r ...).
# The generators are seeded: a rerun with the same package versions gives the same bytes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

run() { echo "==> python3 $*" >&2; python3 "$@"; }

# images (decoding / resize fixtures) and weight-loader fixtures: other generators of the project
for gen in images.py weights_fixtures.py; do
    if [[ -f "$here/$gen" ]]; then
        run "tasks/reference/$gen"
    else
        echo "==> tasks/reference/$gen not present; skipped" >&2
    fi
done

# backbone parity fixtures (uniformer_ref.py on tiny random models)
run tasks/reference/backbone_fixtures.py

# proof that the reference is upstream's architecture: re-run the fixtures through upstream's
# own module code (needs a local git mirror of Sense-X/UniFormer; skipped when there is none)
if [[ -z "${SKIP_CHECK:-}" ]]; then
    run tasks/reference/check_ref.py
fi
