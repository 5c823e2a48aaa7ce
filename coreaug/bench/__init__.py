"""The speed-up benchmark: a grid of training runs, their tables (time-to-target, speed-up
against full, gain over random), a plot of accuracy against training time, the report of any
grid (`write_report`) and its runs kept as one compressed file (`archive_grid`, `restore_grid`)."""
from .archive import ArchiveResult, RestoreResult, RunRecord, archive_grid, load_runs, restore_grid
from .benchmark import BenchResult, run_grid, write_results
from .grid import GridRun, plan_grid
from .report import ReportResult, paired_differences, write_report
from .timing import default_target, speedup, time_to_target

__all__ = ["run_grid", "write_results", "BenchResult", "GridRun", "plan_grid",
           "time_to_target", "speedup", "default_target",
           "write_report", "ReportResult", "paired_differences",
           "archive_grid", "restore_grid", "load_runs", "RunRecord", "ArchiveResult", "RestoreResult"]
