"""`coreaug bench`: a grid of training runs and its speed-up tables."""
import os
import shlex
import sys

import click

import coreaug.bench
from coreaug.bench.tables import left_out, read_run
from coreaug.bench.workers import Terminated
from coreaug.errors import UsageError
from coreaug.files import DISK_ERRORS

from coreaug.selection.rules import LOSS_FILTERED
from coreaug.training.config import SELECTING

from .errors import disk_error_line, fail, program_words, user_errors
from .train import make_config, refuse_unused_flags, silence_stdout, stdout_closed, train_options

# After a full disk: the finished runs are skipped and interrupted ones resumed (bench has no --resume).
BENCH_AGAIN = "run the same command again (it keeps the finished runs and resumes the others)"


def _list(flag, text, convert=str):
    try:
        return [convert(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} must be a comma-separated list like 0.1,0.3, got {text!r}") from None


def _fail_if_only_the_plot(exc, out):
    """One line for a disk that refused accuracy_vs_time.png, written last: saying where the tables are."""
    tables = os.path.join(out, "results.md")
    if exc.errno in DISK_ERRORS and os.path.basename(exc.filename or "") == "accuracy_vs_time.png" \
            and os.path.isfile(tables):
        fail(disk_error_line(exc, BENCH_AGAIN, done=f"the tables were written to {tables}"))


def _report(run, status, position, total, error=None):
    prefix = f"[{position}/{total}] {run.name}:"
    if status == "skipped":
        click.echo(f"{prefix} finished before, skipped ({run.folder})")
        return
    if status == "elsewhere":
        click.echo(f"{prefix} running elsewhere (another coreaug process holds {run.folder}), left to it")
        return
    if status == "failed":
        click.echo(f"{prefix} failed: {error}")
        return
    row = read_run(run)  # the figures the tables will show
    resumed = " resumed," if status == "resumed" else ""
    click.echo(f"{prefix}{resumed} final {row['final_accuracy']:.2%} (best {row['best_accuracy']:.2%}), "
               f"{row['total_seconds']:.1f} s training ({row['selection_seconds']:.1f} s of it selection)")


def _summary(result):
    """The closing line: what the tables cover, what was written, and what is missing."""
    grid = len(result.rows) + len(result.missing)
    if result.rows:
        written = ", ".join(result.files.values())
        line = (f"{len(result.rows)} runs ({result.trained} trained now), target {result.target:.2%}; wrote {written}"
                + ("" if "png" in result.files
                   else " (pip install 'coreaug[plot]' (or matplotlib) for accuracy_vs_time.png)"))
    else:
        line = f"no run of the grid is finished (and readable) yet ({result.trained} trained now); no tables written"
    if result.missing:
        line += (f"; {len(result.missing)} of the grid's {grid} runs are missing from the tables: "
                 + "; ".join(left_out(result.why)))
    return line


@click.command("bench")
@click.option("--subsets", default="0.1,0.3,0.5", show_default=True, help="Selection fractions, comma-separated.")
@click.option("--strategies", default="coreset,random,maxloss", show_default=True,
              help="Selecting strategies (selection rules), comma-separated: " + ", ".join(SELECTING) + ".")
@click.option("--references", default="none,full", show_default=True,
              help="Reference runs, comma-separated (full: augment everyone; none: no one).")
@click.option("--seeds", type=int, default=3, show_default=True, help="Seeds per cell: --seed, --seed + 1, ...")
@click.option("--target", type=float,
              help="Accuracy for time-to-target, in (0, 1] [default: 99% of full's mean final accuracy; "
                   "without a finished full run, 99% of the best final accuracy].")
@click.option("--jobs", metavar="N",
              help="Train N runs at a time, each in its own worker process: on the CPU each takes cores / N threads "
                   "(OMP_NUM_THREADS where set: a CPU run's figures depend on its thread count), "
                   "on GPUs each its own device from --devices (round-robin when N is larger). 1 trains the runs "
                   "here, one after another [default: one per device of --devices (every visible GPU), 1 on the CPU].")
@click.option("--devices", metavar="LIST",
              help="Devices for the --jobs workers, comma-separated, like cuda:0,cuda:1 (or cpu) "
                   "[default: every visible GPU when --device is cuda or auto and CUDA is available].")
@click.option("--shard", metavar="I/N",
              help="Train only the I-th of N parts of the grid (runs sorted by name, dealt round-robin), so N "
                   "machines share one --out (a Slurm array job: the "
                   "manual's Benchmark page). A run another process holds is "
                   "left to it; the tables cover the grid's finished runs and say how many are missing.")
@train_options
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Grid folder: runs/<run>/, results.csv, results.md, accuracy_vs_time.png.")
@user_errors(again=BENCH_AGAIN)
def bench(subsets, strategies, references, seeds, target, jobs, devices, shard, out, **flags):
    """Train strategies x subsets x seeds plus references; tabulate speed-ups and accuracy.

    Finished runs are skipped and interrupted ones resumed, so the same command continues a
    grid. Exit code 1 when a run failed (the others still train; a run whose checkpoint is
    damaged fails alone), 130 on Ctrl-C and 143 on SIGTERM (SIGHUP 129, SIGUSR1 138; the workers stop; the runs not
    finished keep no summary and train on the next call). A finished run whose files cannot
    be read is named on stderr and left out of the tables. A folder dataset is recorded by
    its absolute path, so the grid continues from any working directory.
    """
    reading = [name for name in _list("--strategies", strategies) if name in LOSS_FILTERED]
    if flags.get("loss_filter") is not None:  # the grid's settings, checked with a strategy that reads it
        if not reading:
            raise UsageError(f"--loss-filter applies to strategies {', '.join(LOSS_FILTERED)} only, and --strategies "
                             f"{strategies} has none of them")
        flags["strategy"] = reading[0]  # (each run trains its own strategy: plan_grid)
    config = make_config(**flags)
    refuse_unused_flags(config.resolved(), strategy=False)  # --milestones with cosine trained every run on cosine
    try:
        result = coreaug.bench.run_grid(
            config, out, subsets=_list("--subsets", subsets, float),
            strategies=_list("--strategies", strategies), references=_list("--references", references),
            seeds=seeds, target=target, report=_report, jobs=jobs, devices=devices, shard=shard)
    except KeyboardInterrupt as exc:
        how = f"terminated ({exc.signal_name})" if isinstance(exc, Terminated) else "interrupted"
        if getattr(exc, "writing_tables", False):
            click.echo(f"{how} while writing the grid's tables, after its runs ended; run the same command to "
                       "write them", err=True)
        else:
            click.echo(f"{how}: the runs not finished keep no summary; run the same command to resume them", err=True)
        sys.exit(exc.exit_code if isinstance(exc, Terminated) else 130)
    except BrokenPipeError:
        if not stdout_closed():  # another pipe (a worker's): a failure, with its traceback
            raise
        silence_stdout()  # stdout's reader went away (`| head`, a `| tee` that died): said on stderr, as train does
        click.echo("stdout closed: the grid stopped; the runs not finished keep no summary; run the same "
                   "command to resume them", err=True)
        sys.exit(1)
    except OSError as exc:
        _fail_if_only_the_plot(exc, out)
        raise
    for name, problem in result.unreadable.items():
        click.echo(f"warning: {name} finished, but {problem}; left out of the tables (remove its folder "
                   "to train it again)", err=True)
    click.echo(_summary(result))
    if result.rows:  # results.md has no paired differences or intervals: the report has
        grid = os.path.normpath(os.fspath(out))
        grid = os.path.join(".", grid) if grid.startswith("-") else grid  # -g: no option
        beside = os.path.abspath(grid) if os.path.basename(grid) in (".", "..") else grid  # not ".-report", hidden
        click.echo(f"paired differences by seed, with intervals: {shlex.join(program_words())} report "
                   f"{shlex.quote(grid)} --out {shlex.quote(beside + '-report')}")
    if result.failed:
        failed = list(result.failed.items())  # each with its error, for a log of stderr alone; past 3, named
        reasons = "; ".join(f"{name}: {error}" for name, error in failed[:3])
        more = f"; and {', '.join(name for name, _ in failed[3:])} (each on its failed line)" if len(failed) > 3 else ""
        click.echo(f"error: {len(failed)} run(s) failed: {reasons}{more}", err=True)
        sys.exit(1)
