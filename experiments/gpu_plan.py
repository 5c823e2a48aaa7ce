"""How many epochs of the paper's recipe fit in the time a GPU check has left (experiments/gpu_check.sh).

Usage: python experiments/gpu_plan.py SPEED_JSON SECONDS_LEFT TRAIN_IMAGES TABLE_TRAIN_LIMIT MOST_EPOCHS

Prints one line: epochs mode epoch_seconds compile_seconds seconds_left compile_mode basis, where
epochs = min(MOST_EPOCHS, floor((left - a 20 s reserve - 30 s start-up - compile) / epoch)) and
epoch is the speed table's max-loss 10% row (else 1.5x its slowest row), scaled from the table's
training images to TRAIN_IMAGES, x 1.15 for evaluation and a selection every 20 epochs; eager or
compiled, whichever fits more. compile_mode is the compiled row's `--fallback-mode` when it was
measured only in that mode (CUDA graphs failed), else "-"; basis has no spaces.
"""
import argparse
import json
import math
import sys

RESERVE, STARTUP, MARGIN = 20.0, 30.0, 1.15


def plan(rows, left, images, limit, most):
    """(epochs, mode, epoch seconds, compile seconds, compile mode or "-", basis) from the speed
    table's JSON `rows`; None when no coreaug row was measured."""
    coreaug_rows = [r for r in rows if not r["hand"]]
    chosen = [r for r in coreaug_rows if r["strategy"] == "maxloss" and r["augment"] == "maxloss"]
    basis = "the max-loss 10% row"
    if not chosen and coreaug_rows:
        slowest = max(coreaug_rows, key=lambda r: r["epoch_seconds"])
        chosen = [dict(r, epoch_seconds=r["epoch_seconds"] * 1.5) for r in coreaug_rows if r["row"] == slowest["row"]]
        basis = "no max-loss row measured: 1.5 x the slowest row"
    best = None
    for r in chosen:
        epoch = r["epoch_seconds"] * images / max(1, min(limit, images)) * MARGIN
        # A fresh process compiles everything again: count the table's longest compile, not only this row's
        # (whose graphs an earlier row may have built).
        compile_s = max([0.0] + [x.get("compile_seconds") or 0.0 for x in rows if x["mode"] == r["mode"]])
        epochs = max(0, min(most, math.floor((left - RESERVE - STARTUP - compile_s) / epoch)))
        if best is None or epochs > best[0]:
            best = (epochs, r["mode"], epoch, compile_s, r.get("fallback_mode") or "-", basis)
    return best


def parse_args(argv):
    """The five arguments of the usage line (argparse's usage line and exit 2 when one is missing)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\nUsage:")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", metavar="SPEED_JSON",
                        help="the speed table's JSON, bench_trainer.py's --json (unreadable: 0 epochs planned)")
    parser.add_argument("left", metavar="SECONDS_LEFT", type=float, help="seconds the GPU check has left")
    parser.add_argument("images", metavar="TRAIN_IMAGES", type=int,
                        help="training images of the planned run (the table's epoch seconds are scaled to it)")
    parser.add_argument("limit", metavar="TABLE_TRAIN_LIMIT", type=int,
                        help="the speed table's --train-limit (its training images)")
    parser.add_argument("most", metavar="MOST_EPOCHS", type=int, help="the most epochs to plan")
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    path, left, images, limit, most = args.path, args.left, args.images, args.limit, args.most
    try:
        with open(path) as f:
            rows = json.load(f)["rows"]
    except (OSError, ValueError, KeyError):
        rows = []
    best = plan(rows, left, images, limit, most)
    if best is None:
        return f"0 none 0 0 {left:.0f} - no-measurement"
    epochs, mode, epoch, compile_s, compile_mode, basis = best
    return f"{epochs} {mode} {epoch:.3f} {compile_s:.1f} {left:.0f} {compile_mode} {basis.replace(' ', '_')}"


if __name__ == "__main__":
    print(main(sys.argv[1:]))
