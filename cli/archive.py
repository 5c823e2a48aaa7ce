"""`coreaug archive`: a grid's runs as one compressed file, and back into run folders."""
import click

import coreaug.bench
from coreaug.errors import UsageError
from coreaug.files import size_text

from .errors import user_errors


@click.command("archive")
@click.argument("grid", required=False, type=click.Path(file_okay=False))
@click.option("--to", "to", type=click.Path(dir_okay=False),
              help="The archive to write [default: GRID.runs.jsonl.xz beside GRID].")
@click.option("--restore", type=click.Path(dir_okay=False),
              help="Write this archive's finished runs back as run folders under --out/runs/.")
@click.option("--out", type=click.Path(file_okay=False), help="With --restore: the grid folder to write into.")
@user_errors
def archive(grid, to, restore, out):
    """Keep a grid's runs in one compressed file, or restore them.

    `coreaug archive GRID` writes every run's config.json, metrics.jsonl and summary.json (no
    checkpoints or models) as one xz-compressed JSON line per run; the same runs give the same
    bytes; folders of runs/ that are no runs are left out, and named. `coreaug report` reads the
    file directly. `coreaug archive --restore FILE --out GRID` writes the finished runs back (and
    grid.json's plan), so that `coreaug bench --out GRID` with the same flags skips them.
    """
    for flag, value, what in (("GRID", grid, "a grid folder"), ("--to", to, "the archive's file, or leave it out "
                               "for GRID.runs.jsonl.xz"), ("--restore", restore, "an archive's file"),
                              ("--out", out, "the grid folder")):
        if value is not None and not value.strip():  # ("" is no path: the OS's "Is a directory" for --to)
            raise UsageError(f"{flag} is empty; give {what}")
    if restore:
        if grid or to:
            raise UsageError("--restore takes no GRID or --to; give --restore FILE --out GRID")
        if not out:
            raise UsageError("--restore needs --out GRID, the grid folder to write the runs into")
        result = coreaug.bench.restore_grid(restore, out=out)
        replaced = (f"; {len(result.replaced)} of them in place of a damaged run: "
                    + ", ".join(f"{name} ({why})" for name, why in result.replaced.items())) if result.replaced else ""
        click.echo(f"restored {_runs(len(result.written))} into {result.runs_folder} "
                   f"({len(result.kept)} {'was' if len(result.kept) == 1 else 'were'} there already{replaced})")
        if result.why:
            click.echo(f"left out {_runs(len(result.why))}: "
                       + ", ".join(f"{name} ({why})" for name, why in result.why.items()))
        return
    if not grid:
        raise UsageError("give GRID (a grid folder to archive) or --restore FILE --out GRID")
    if out:
        raise UsageError("--out goes with --restore; to choose the archive's name give --to FILE")
    result = coreaug.bench.archive_grid(grid, to=to)
    click.echo(f"archived {_runs(result.runs)} ({result.finished} finished) into {result.path} "
               f"({size_text(result.size)})")
    if result.not_started:
        click.echo(f"grid.json plans {_runs(len(result.not_started))} not started yet, kept in the archive's plan: "
                   + ", ".join(result.not_started))
    if result.skipped:
        folders = "folder" if len(result.skipped) == 1 else "folders"
        click.echo(f"left out {len(result.skipped)} {folders} that {'is' if folders == 'folder' else 'are'} no run: "
                   + ", ".join(f"{name!r} ({why})" for name, why in result.skipped.items()))


def _runs(count):
    return f"{count} run" if count == 1 else f"{count} runs"
