"""`coreaug archive`: a grid's runs as one compressed file, and back into run folders."""
import click

import coreaug.bench
from coreaug.errors import UsageError

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
    bytes. `coreaug report` reads the file directly. `coreaug archive --restore FILE --out GRID`
    writes the finished runs back, so that `coreaug bench --out GRID` with the same flags skips them.
    """
    if restore:
        if grid or to:
            raise UsageError("--restore takes no GRID or --to; give --restore FILE --out GRID")
        if not out:
            raise UsageError("--restore needs --out GRID, the grid folder to write the runs into")
        result = coreaug.bench.restore_grid(restore, out=out)
        left = f", {len(result.left_out)} unfinished left out" if result.left_out else ""
        click.echo(f"restored {len(result.written)} runs into {result.runs_folder} "
                   f"({len(result.kept)} were there already{left})")
        return
    if not grid:
        raise UsageError("give GRID (a grid folder to archive) or --restore FILE --out GRID")
    if out:
        raise UsageError("--out goes with --restore; to choose the archive's name give --to FILE")
    result = coreaug.bench.archive_grid(grid, to=to)
    click.echo(f"archived {result.runs} runs ({result.finished} finished) into {result.path} "
               f"({result.size / 1e6:.2f} MB)")
