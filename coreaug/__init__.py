"""coreaug: strong data augmentation on a weighted coreset instead of every example.

The public API is re-exported here; see README.md for usage.
"""
__version__ = "0.1.0"

from .selection import (
    Selection,
    estimate_gradients,
    last_layer_gradients,
    logit_gradients,
    select_coreset,
    select_maxloss,
    select_random,
)

__all__ = [
    "Selection", "select_coreset", "select_random", "select_maxloss",
    "logit_gradients", "last_layer_gradients", "estimate_gradients",
]
