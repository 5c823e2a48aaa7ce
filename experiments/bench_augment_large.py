"""Policies on large images on the CPU (above 64x64 pixels), against an earlier checkout.

Usage:
    OMP_NUM_THREADS=1 python experiments/bench_augment_large.py --baseline DIR [--repeats 7] [--compiled]
        [--out experiments/results/augment_large.md]

`--baseline DIR`: a checkout of an earlier coreaug (`git worktree add DIR REV`), timed on the
same batches in its own process, turn by turn with this tree's (the machine's speed drifts).
For each policy and image size: ms a call (median and fastest over `--repeats` calls, after
one warm-up call, two compiled) on a batch of uint8 images drawn with a fixed seed, with a key
per image.
`--compiled`: also this tree's call compiled whole (`torch.compile(fullgraph=True)`, as inside
a compiled training step, where large images take the dense path), in the first turn.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_compiled_step import revision  # noqa: E402
from script_checks import checked, run_child  # noqa: E402

CASES = [("randaugment", 3, 96, 64), ("trivialaugment", 3, 96, 64), ("autoaugment-imagenet", 3, 96, 64),
         ("randaugment", 3, 224, 32), ("autoaugment-imagenet", 3, 224, 32)]


def time_cases(repeats, compiled=False):
    """{case: [ms per call]} for this process's coreaug (`compiled`: the call compiled whole)."""
    import torch

    import coreaug
    from coreaug.augment.sampling import RandomSource

    torch.set_num_threads(1)
    result = {}
    for name, channels, size, batch in CASES:
        policy = coreaug.create_policy(name)
        images = torch.randint(0, 256, (batch, channels, size, size), dtype=torch.uint8,
                               generator=torch.Generator().manual_seed(0))
        keys = RandomSource.image_keys(torch.arange(batch), 0)
        call = (lambda x, k, policy=policy: policy(x, RandomSource(k)))
        if compiled:
            torch._dynamo.reset()  # each case its own graph (one code object for all: the recompile limit)
            call = torch.compile(call, fullgraph=True, dynamic=False)
        for _ in range(2 if compiled else 1):  # warm-up: tables, caches (compiled: the graph; the tables
            call(images, keys)  # its trace built make a second trace at the next call)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call(images, keys)
            times.append((time.perf_counter() - start) * 1e3)
        result[f"{name} {channels}x{size}x{size} x{batch}"] = times
    return result


def in_process(repeats, tree, compiled=False):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    argv = [sys.executable, __file__, "--one", "--repeats", str(repeats)] + (["--compiled"] if compiled else [])
    out = run_child(argv, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=False,
                        help="a checkout of an earlier coreaug (git worktree add DIR REV), timed beside this "
                             "tree's in its own process")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed calls per case in each turn, after a warm-up (median and fastest kept; "
                             "default: %(default)s)")
    parser.add_argument("--turns", type=int, default=3, help="alternations of this tree and the baseline")
    parser.add_argument("--compiled", action="store_true", help="also this tree's calls compiled whole")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="experiments/results/augment_large.md",
                        help="the markdown table's path (default: %(default)s)")
    args = checked(parser, parser.parse_args())
    if args.one:
        print(json.dumps(time_cases(args.repeats, args.compiled)))
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = [("this tree", here)] + ([(f"at {revision(args.baseline)}", args.baseline)] if args.baseline else [])
    load_before = open("/proc/loadavg").read().strip()
    times = {label: {} for label, _ in trees}
    for turn in range(args.turns):
        for label, tree in trees:
            for case, ms in in_process(args.repeats, tree).items():
                times[label].setdefault(case, []).extend(ms)
        if args.compiled and turn == 0:
            times["this tree, compiled"] = in_process(args.repeats, here, compiled=True)
    trees += [("this tree, compiled", here)] if args.compiled else []
    load_after = open("/proc/loadavg").read().strip()
    import torch

    lines = ["# Policies on large images on the CPU", "",
             f"Command: `OMP_NUM_THREADS=1 python experiments/bench_augment_large.py"
             f"{' --baseline DIR' if args.baseline else ''} --repeats {args.repeats} --turns {args.turns}"
             f"{' --compiled' if args.compiled else ''}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, one thread; load "
             f"(/proc/loadavg) before: `{load_before}`, after: `{load_after}`.", "",
             f"ms a call on uint8 images, a key per image; {args.turns} turns of each tree in its own process "
             f"({args.repeats} calls each after a warm-up): median and fastest of all calls.", "",
             "| policy, images, batch | " + " | ".join(f"{label} median | fastest" for label, _ in trees) + " |",
             "|---|" + "---|---|" * len(trees)]
    for case in times[trees[0][0]]:
        cells = [f"{statistics.median(times[label][case]):.1f} | {min(times[label][case]):.1f}" for label, _ in trees]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    with open(args.out, "w") as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
