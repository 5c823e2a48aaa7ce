"""The speed-up benchmark: a grid of training runs, their tables (time-to-target, speed-up
against full, gain over random) and a plot of accuracy against training time."""
from .benchmark import BenchResult, run_grid, write_results
from .grid import GridRun, plan_grid
from .timing import default_target, speedup, time_to_target

__all__ = ["run_grid", "write_results", "BenchResult", "GridRun", "plan_grid",
           "time_to_target", "speedup", "default_target"]
