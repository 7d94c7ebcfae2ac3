"""The three next-hour classes and the label value that marks "no label"."""
from __future__ import annotations

import numpy as np

#: Class names in label order: 0 = DOWN (< -threshold), 1 = SIDEWAYS, 2 = UP (> +threshold).
CLASS_NAMES: tuple[str, str, str] = ("DOWN", "SIDEWAYS", "UP")
NUM_CLASSES = len(CLASS_NAMES)
#: Label integers in class order, for sklearn's ``labels=`` arguments.
LABELS = np.arange(NUM_CLASSES)
#: Label of a node without a target (missing next candle, masked pair); PyTorch's NLLLoss default.
IGNORE_INDEX = -100
