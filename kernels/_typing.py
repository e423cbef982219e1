"""Array type aliases shared by the kernels' type hints (Numba ignores annotations)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
