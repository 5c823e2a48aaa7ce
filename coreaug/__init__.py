"""coreaug: strong data augmentation on a weighted coreset instead of every example.

The public API is re-exported here; see README.md for usage.
"""
__version__ = "0.1.0"
