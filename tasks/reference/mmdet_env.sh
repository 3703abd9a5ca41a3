#!/usr/bin/env bash
# Create (or complete) the mmdetection venv that detection_fixtures.py runs in:
# tasks/reference/.venv-mmdet (ignored by git through the `.gitignore` this script writes into it).
#
#   bash tasks/reference/mmdet_env.sh            # idempotent; prints the versions at the end
#   tasks/reference/.venv-mmdet/bin/python tasks/reference/detection_fixtures.py
#
# It mirrors mmseg_env.sh (a venv with --system-site-packages, so torch, numpy, opencv-python-
# headless, Pillow, safetensors come from tasks/reference/requirements.txt; OpenMMLab packages with
# --no-deps, then by hand the pure-Python packages they import; every version pinned), but is a
# venv of its own: mmsegmentation 1.2.2 imports mmdet when it is installed (Mask2Former), and the
# segmentation fixtures' mmcv.ops stand-in is not meant to satisfy mmdet, so the two are kept apart.
#
# Added for detection: mmdet 3.3.0 (--no-deps), pycocotools (COCO RLE, mmdet's COCO api),
# shapely and terminaltables (imported by mmdet), scipy is taken from the system site-packages, and
# torchvision 0.29.2: its wheel is built against torch's stable ABI (`_C_stable.so`, Requires-Dist
# torch>=2.14), so it loads with torch 2.15. mmcv-lite has no compiled ops; detection_fixtures.py
# puts a `mmcv._ext` of its own into sys.modules whose `nms` and `roi_align_forward` kernels are
# torchvision.ops.nms / roi_align, under mmcv's own Python wrappers (mmcv.ops.nms, batched_nms,
# RoIAlign) -- see the docstring there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-mmdet"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "==> creating $venv (--system-site-packages)" >&2
    "$python" -m venv --system-site-packages "$venv"
fi
# keep the venv out of `git status` (the repository's .gitignore only names tasks/reference/.venv/)
printf '# created by tasks/reference/mmdet_env.sh\n*\n' > "$venv/.gitignore"

# OpenMMLab packages, without their dependency lists (torchvision: its only deps are numpy, torch,
# pillow, all from the system; --no-deps so pip never touches torch)
openmmlab=(mmengine==0.10.7 mmcv-lite==2.1.0 mmdet==3.3.0 torchvision==0.29.2)
# what they import, pure Python or small wheels (rich needs markdown-it-py/mdurl/pygments; yapf
# platformdirs; mmdet pycocotools, shapely, terminaltables, six, tqdm, and matplotlib at import time
# (mmdet/utils/mot_error_visualize.py), which needs contourpy, cycler, fonttools, kiwisolver and
# python-dateutil/pyparsing from the system)
pure=(addict==2.4.0 yapf==0.43.0 platformdirs==4.14.7 termcolor==3.3.0 rich==15.0.0
      markdown-it-py==4.3.0 mdurl==0.1.2 Pygments==2.20.0 PyYAML==6.0.3 packaging
      pycocotools==2.0.11 shapely==2.2.0 terminaltables==3.1.10 six==1.17.0 tqdm==4.70.1
      matplotlib==3.11.2 contourpy==1.3.3 cycler==0.12.1 fonttools==4.68.0 kiwisolver==1.5.1)

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    "${openmmlab[@]}" "${pure[@]}"

# smoke test: the imports the fixture script needs, with its mmcv._ext substitute
cd "$here"
"$venv/bin/python" -W ignore detection_fixtures.py --check-env
