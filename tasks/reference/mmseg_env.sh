#!/usr/bin/env bash
# Create (or complete) the mmsegmentation venv that segmentation_fixtures.py and
# tasks/segmentation/check_with_mmseg.py run in:  tasks/reference/.venv  (gitignored).
#
#   bash tasks/reference/mmseg_env.sh            # idempotent; prints the versions at the end
#   tasks/reference/.venv/bin/python tasks/reference/segmentation_fixtures.py
#
# The venv sees the system site-packages (torch, numpy, opencv-python-headless, Pillow, PyYAML,
# ... from tasks/reference/requirements.txt), and adds mmengine, mmcv-lite and mmsegmentation with
# --no-deps (their declared deps would pull opencv-python and other wheels we do not want), then
# by hand the pure-Python packages they import. Every version is pinned.
#
# mmcv-lite has no compiled ops (`mmcv._ext`), and mmsegmentation 1.2.2 imports a few names from
# `mmcv.ops` at import time (point_sample, sigmoid_focal_loss, ...). The heads used here do not
# call any of them, so the scripts first install tasks/reference/mmcv_ops_stub.py as
# `sys.modules['mmcv.ops']` (names that fail loudly if ever called).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "==> creating $venv (--system-site-packages)" >&2
    "$python" -m venv --system-site-packages "$venv"
fi

# OpenMMLab packages, without their dependency lists
openmmlab=(mmengine==0.10.7 mmcv-lite==2.1.0 mmsegmentation==1.2.2)
# what they import, pure Python (rich needs markdown-it-py/mdurl/pygments; yapf platformdirs;
# ftfy wcwidth; mmseg's tokenizer regex; its metrics prettytable)
pure=(addict==2.4.0 yapf==0.43.0 platformdirs==4.14.7 termcolor==3.3.0 rich==15.0.0
      markdown-it-py==4.3.0 mdurl==0.1.2 Pygments==2.20.0 ftfy==6.3.1 wcwidth==0.7.0
      regex==2026.5.9 prettytable==3.18.0 PyYAML==6.0.3 packaging)

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    "${openmmlab[@]}" "${pure[@]}"

# smoke test: the imports the fixture scripts need, with the mmcv.ops stand-in
cd "$here"
"$venv/bin/python" -W ignore - <<'EOF'
import mmcv_ops_stub
mmcv_ops_stub.install()
import cv2, mmcv, mmengine, mmseg, numpy, torch, PIL
from mmseg.models import EncoderDecoder  # noqa: F401
from mmseg.models.decode_heads import FCNHead, FPNHead, UPerHead  # noqa: F401
from mmseg.models.necks import FPN  # noqa: F401
from mmseg.evaluation import IoUMetric  # noqa: F401
from mmseg.apis import inference_model  # noqa: F401
print(f"mmseg venv ok: mmsegmentation {mmseg.__version__}, mmcv(-lite) {mmcv.__version__}, "
      f"mmengine {mmengine.__version__}, torch {torch.__version__}, numpy {numpy.__version__}, "
      f"cv2 {cv2.__version__}, Pillow {PIL.__version__}")
EOF
