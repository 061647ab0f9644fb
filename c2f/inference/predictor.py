"""The one seam between PyTorch and ONNX Runtime.

A predictor turns a float32 (N, C, h, w) batch of network inputs into float32
(N, K, h, w) logits. Normalisation, windowing, blending, smoothing and argmax
happen outside it, once for every backend.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Predictor = Callable[[np.ndarray], np.ndarray]
