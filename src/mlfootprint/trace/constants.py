"""The trace's data files, loaded without torch: the persistent cache's key digests them (``cache.py``)."""
from __future__ import annotations

from ..core.datafiles import SourcedConstants

KERNELS = SourcedConstants("trace", "kernels.toml", "trace")  # the target's kernels (target.py, kernels.py)
TRANSFORMS = SourcedConstants("trace", "transforms.toml", "trace")  # LoRA, recomputation (transforms.py)
