"""Shared test settings: passive OpenMP waiting (set before torch loads), no real data leaks in."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
