"""A stand-in for `mmcv.ops`, which mmcv-lite ships as Python files without the compiled `_ext`.

mmsegmentation 1.2.2 imports a few names from `mmcv.ops` at import time (`point_sample` in
mmseg/utils/mask_classification.py and mmseg/models/utils/point_sample.py, `sigmoid_focal_loss`
in its focal loss, ...), none of which the heads used here (UPerHead, FCNHead, FPN, FPNHead,
EncoderDecoder) call. `install()` puts this module into `sys.modules['mmcv.ops']` so those
imports succeed; every name it hands out raises if it is ever *used*, so nothing is silently
replaced.

    import mmcv_ops_stub; mmcv_ops_stub.install()   # before the first `import mmseg`
"""

from __future__ import annotations

import sys
import types


def _unavailable(name: str):
    def fail(*args, **kwargs):
        raise NotImplementedError(
            f"mmcv.ops.{name}: compiled mmcv ops are not installed (mmcv-lite); "
            "tasks/reference/mmcv_ops_stub.py only lets mmseg import")

    class Unavailable:  # usable as a base class or a function, fails when instantiated/called
        __name__ = name

        def __init__(self, *args, **kwargs):
            fail()

        def __call__(self, *args, **kwargs):
            fail()

    Unavailable.__qualname__ = Unavailable.__name__ = name
    return Unavailable


def install() -> types.ModuleType:
    """Register the stub as `mmcv.ops` (idempotent) and return it."""
    existing = sys.modules.get("mmcv.ops")
    if existing is not None and getattr(existing, "__mmcv_ops_stub__", False):
        return existing
    mod = types.ModuleType("mmcv.ops", __doc__)
    mod.__mmcv_ops_stub__ = True
    mod.__path__ = []  # a package, so `mmcv.ops.<sub>` imports fail cleanly instead of oddly

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _unavailable(name)
        setattr(mod, name, value)
        return value

    mod.__getattr__ = __getattr__
    sys.modules["mmcv.ops"] = mod
    import mmcv  # noqa: E402  (so `mmcv.ops` also resolves as an attribute)
    mmcv.ops = mod
    return mod
