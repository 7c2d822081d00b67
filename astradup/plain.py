"""Numpy values as Python builtins, the one conversion every writer of JSON uses (shard metadata,
fingerprint files, HTTP answers): records carry numpy scalars (a segment's score is a float32),
which neither ``json`` nor FastAPI's serializer accept."""
from __future__ import annotations

from typing import Any

import numpy as np


def plain(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays turned into builtins, through dicts, lists and tuples
    (tuples become lists, dict keys strings); anything else as it is."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj
