"""Unit-length rows: the one L2 normalisation of every vector path (frame embeddings, audio window
vectors, projected rows, rows read back from their compact forms).

Search scores are inner products of these rows, so index and query must be normalised by the same
rule, or equal inputs would stop scoring equal; hence one function, not one per module.

What each caller needs, and why the rule is what it is:

* A row of zeros (a silent window's MFCC part, an empty code histogram, a zero row of a projection)
  must stay zero, never become NaN: it then scores 0 against everything, i.e. is no evidence.
* A row that is not finite (NaN from a broken decode or model) becomes zero too, for the same
  reason: a NaN would poison every score it takes part in.
* The dtype is the input's (float64 intermediates of the audio vectors keep their precision, so a
  vector rebuilt from its compact form is bit-for-bit the one built at indexing); integer rows
  (int8 quantised embeddings) are normalised in float32.
"""
from __future__ import annotations

import numpy as np


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of the 2-D ``x`` scaled to unit L2 norm, in ``x``'s float dtype (float32 for integer
    rows); a row whose norm is zero or not finite comes back as zeros."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=(n > 0) & np.isfinite(n))
