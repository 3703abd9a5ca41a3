#!/usr/bin/env bash
# Rebuild every committed reference fixture under Tests/UniFormerTests/Fixtures/ from scratch.
#
#   bash tasks/reference/make_fixtures.sh            # from anywhere in the checkout
#   SKIP_CHECK=1 bash tasks/reference/make_fixtures.sh   # without the upstream cross-check
#   SKIP_MMSEG=1 bash tasks/reference/make_fixtures.sh   # without the mmseg (segmentation) fixtures
#   SKIP_MMDET=1 bash tasks/reference/make_fixtures.sh   # without the mmdet (detection) fixtures
#
# Needs the Python packages in tasks/reference/requirements.txt (pip install -r ...); the
# segmentation fixtures make their own venv (tasks/reference/mmseg_env.sh) on top of those, the
# detection fixtures another (tasks/reference/mmdet_env.sh).
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

# segmentation fixtures (mmsegmentation 1.2.2's EncoderDecoder around uniformer_ref) and the
# evaluation recipe's check (writes Fixtures/segmentation/eval/): both run in tasks/reference/.venv,
# which mmseg_env.sh creates when it is missing. SKIP_MMSEG=1 leaves them out.
if [[ -z "${SKIP_MMSEG:-}" ]]; then
    venv_python="$here/.venv/bin/python"
    if [[ ! -x "$venv_python" ]] || ! "$venv_python" -c "import mmseg" >/dev/null 2>&1; then
        bash "$here/mmseg_env.sh"
    fi
    runv() { echo "==> tasks/reference/.venv/bin/python $*" >&2; "$venv_python" "$@"; }
    runv tasks/reference/segmentation_fixtures.py
    runv tasks/segmentation/check_with_mmseg.py
fi

# detection fixtures (mmdetection 3.3's MaskRCNN / CascadeRCNN / RetinaNet around uniformer_ref, with
# mmdet 2.11's test semantics; also writes Fixtures/detection/units.json): they run in
# tasks/reference/.venv-mmdet, which mmdet_env.sh creates when it is missing. SKIP_MMDET=1 leaves them out.
if [[ -z "${SKIP_MMDET:-}" ]]; then
    det_python="$here/.venv-mmdet/bin/python"
    if [[ ! -x "$det_python" ]] || ! "$det_python" -c "import mmdet, torchvision, pycocotools" >/dev/null 2>&1; then
        bash "$here/mmdet_env.sh"
    fi
    echo "==> tasks/reference/.venv-mmdet/bin/python tasks/reference/detection_fixtures.py" >&2
    "$det_python" tasks/reference/detection_fixtures.py
fi

# proof that the reference is upstream's architecture: re-run the fixtures through upstream's
# own module code (needs a local git mirror of Sense-X/UniFormer; skipped when there is none)
if [[ -z "${SKIP_CHECK:-}" ]]; then
    run tasks/reference/check_ref.py
fi
