"""Benchmark: images/second of coreaug's batched policies against a per-image Pillow pipeline
doing the same operations, on CIFAR-sized (3x32x32) and 28x28 grayscale batches.

Writes a markdown table (default experiments/results/augment.md) headed by the command that
produced it. Timings are the best of several repeats because the machine is shared.

    python experiments/bench_augment.py [--batch 512] [--repeats 7] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import os
import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import PIL
import coreaug  # noqa: F401 (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch
from PIL import Image, ImageOps

from coreaug.augment import MaxLossAugment, create_policy
from coreaug.augment.autoaugment import AUTOAUGMENT_BINS, AUTOAUGMENT_RANGES, CIFAR10_SUBPOLICIES
from coreaug.augment.op_kinds import OP_KINDS
from coreaug.augment.op_set import OpSet
from coreaug.augment.pillow_reference import PILLOW_OPS
from coreaug.augment.randaugment import randaugment_ranges, trivialaugment_ranges
from script_checks import positive

SHAPES = {"3x32x32": (3, 32, 32), "1x28x28": (1, 28, 28)}
POLICIES = ("randaugment", "trivialaugment", "autoaugment", "weak", "cutout",
            "weak+randaugment+cutout", "maxloss")


def _signed(op: str, magnitude: float, rng: random.Random) -> float:
    kind = OP_KINDS[op]
    sign = -1.0 if kind.signed and rng.random() < 0.5 else 1.0
    return kind.base + sign * magnitude


class PillowPolicies:
    """Per-image Pillow versions of the policies, with coreaug's op sets and magnitudes."""

    def __init__(self, height: int, width: int, seed: int = 0):
        self.rng = random.Random(seed)
        self.height, self.width = height, width
        self.randaugment = OpSet(randaugment_ranges(), 31)
        self.randaugment_table = self.randaugment.magnitude_table(height, width, 255.0)
        self.trivial = OpSet(trivialaugment_ranges(), 31)
        self.trivial_table = self.trivial.magnitude_table(height, width, 255.0)
        autoaugment = OpSet(AUTOAUGMENT_RANGES, AUTOAUGMENT_BINS)
        table = autoaugment.magnitude_table(height, width, 255.0)
        self.autoaugment_table = {name: row for name, row in zip(autoaugment.names, table)}

    def randaugment_one(self, image, num_ops=2, magnitude=9):
        for _ in range(num_ops):
            k = self.rng.randrange(len(self.randaugment.names))
            op = self.randaugment.names[k]
            value = _signed(op, self.randaugment_table[k][magnitude], self.rng)
            image = PILLOW_OPS[op](image, value)
        return image

    def trivialaugment_one(self, image):
        k = self.rng.randrange(len(self.trivial.names))
        op = self.trivial.names[k]
        magnitude = self.trivial_table[k][self.rng.randrange(31)]
        return PILLOW_OPS[op](image, _signed(op, magnitude, self.rng))

    def autoaugment_one(self, image):
        for op, probability, bin_index in self.rng.choice(CIFAR10_SUBPOLICIES):
            if self.rng.random() < probability:
                value = _signed(op, self.autoaugment_table[op][bin_index or 0], self.rng)
                image = PILLOW_OPS[op](image, value)
        return image

    def weak_one(self, image, padding=4):
        padded = ImageOps.expand(image, border=padding, fill=0)
        left, top = self.rng.randint(0, 2 * padding), self.rng.randint(0, 2 * padding)
        image = padded.crop((left, top, left + self.width, top + self.height))
        return ImageOps.mirror(image) if self.rng.random() < 0.5 else image

    def cutout_one(self, image):
        size = round(16 * min(self.height, self.width) / 32)
        cy, cx = self.rng.randrange(self.height), self.rng.randrange(self.width)
        image = image.copy()
        box = (max(cx - size // 2, 0), max(cy - size // 2, 0),
               min(cx - size // 2 + size, self.width), min(cy - size // 2 + size, self.height))
        if box[0] < box[2] and box[1] < box[3]:
            image.paste(0, box)
        return image

    def pipeline(self, policy: str):
        steps = [getattr(self, f"{name}_one") for name in policy.split("+")]

        def run(array_batch: np.ndarray) -> np.ndarray:
            # As a Dataset + DataLoader would: array -> PIL per image -> ops -> array, stacked.
            outputs = []
            for array in array_batch:
                image = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
                for step in steps:
                    image = step(image)
                outputs.append(np.asarray(image))
            return np.stack(outputs)
        return run


def small_cnn(channels: int, classes: int = 10) -> torch.nn.Module:
    """A small CNN standing in for the model that max-loss evaluates its candidates on."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(64, classes))


def best_seconds(run, repeats: int, synchronize=lambda: None) -> float:
    run()  # warm-up
    synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def measure(shape_name, policy_name, args, device):
    """Seconds per batch: (coreaug, coreaug with one thread or None on CUDA, Pillow or None)."""
    channels, height, width = SHAPES[shape_name]
    cpu_batch = torch.randint(0, 256, (args.batch, channels, height, width), dtype=torch.uint8)
    batch = cpu_batch.to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if policy_name == "maxloss":
        model = small_cnn(channels).to(device)
        labels = torch.randint(0, 10, (args.batch,), device=device)
        policy = MaxLossAugment(create_policy("randaugment"), candidates=4)
        run = lambda: policy(batch, generator, model=model, labels=labels)  # noqa: E731
        pillow = None
    else:
        policy = create_policy(policy_name)
        run = lambda: policy(batch, generator)  # noqa: E731
        arrays = cpu_batch.permute(0, 2, 3, 1).contiguous().numpy()
        pillow_pipeline = PillowPolicies(height, width).pipeline(policy_name)
        pillow = lambda: pillow_pipeline(arrays)  # noqa: E731
    ours = best_seconds(run, args.repeats, synchronize)
    ours_one_thread = None
    if device.type == "cpu":
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        ours_one_thread = best_seconds(run, args.repeats)
        torch.set_num_threads(threads)
    theirs = best_seconds(pillow, args.pillow_repeats) if pillow else None
    return ours, ours_one_thread, theirs


def busy_cores(seconds: float = 2.0) -> float:
    """How many cores other processes keep busy, sampled from /proc/stat while this one sleeps
    (Linux; NaN elsewhere)."""
    def snapshot():
        with open("/proc/stat") as stat:
            user, nice, system, idle, iowait, irq, softirq = map(int, stat.readline().split()[1:8])
        busy = user + nice + system + irq + softirq
        return busy, busy + idle + iowait
    try:
        busy_before, total_before = snapshot()
        time.sleep(seconds)
        busy_after, total_after = snapshot()
    except OSError:
        return float("nan")
    return (os.cpu_count() or 1) * (busy_after - busy_before) / max(total_after - total_before, 1)


def _rate(batch, seconds):
    return f"{batch / seconds:,.0f}" if seconds else "n/a"


def _ratio(theirs, ours):
    return f"{theirs / ours:.1f}x" if theirs and ours else "n/a"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=positive, default=512, help="uint8 images per batch (default: %(default)s)")
    parser.add_argument("--repeats", type=positive, default=15, help="coreaug repeats (best kept)")
    parser.add_argument("--pillow-repeats", type=int, default=3, help="Pillow repeats (best kept)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", default="experiments/results/augment.md",
                        help="the markdown table's path (default: %(default)s)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA build of torch and a GPU")

    threads = torch.get_num_threads()
    others = busy_cores()
    rows = []
    for shape_name in SHAPES:
        for policy_name in POLICIES:
            ours, ours_one_thread, theirs = measure(shape_name, policy_name, args, device)
            rows.append(
                f"| {shape_name} | {policy_name} | {_rate(args.batch, ours)} | "
                f"{_rate(args.batch, ours_one_thread)} | {_rate(args.batch, theirs)} | "
                f"{_ratio(theirs, ours)} | {_ratio(theirs, ours_one_thread)} |")
            print(rows[-1], flush=True)

    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{os.cpu_count()}-core CPU, torch's default {threads} threads")
    command = ["python", "experiments/bench_augment.py",
               *map(shlex.quote, sys.argv[1:] if argv is None else argv)]
    lines = [
        "# Augmentation throughput: coreaug (batched, per-example) vs per-image Pillow",
        "",
        "Command: `" + " ".join(command) + "`",
        "",
        f"Batches of {args.batch} uint8 images; coreaug on {device.type} ({where}; the "
        "1-thread column sets `torch.set_num_threads(1)`), torch "
        f"{torch.__version__}, Pillow {PIL.__version__}. Pillow runs per image in one process, "
        "from a uint8 array through PIL and back, as a Dataset would. Images/second from the "
        f"best of {args.repeats} (coreaug) and {args.pillow_repeats} (Pillow) repeats: the machine "
        f"is shared (other processes kept {others:.1f} of {os.cpu_count()} cores busy just before "
        "the run), and with another process on a core torch's OpenMP threads stall at every "
        "parallel op, so the best repeat is the least disturbed one. maxloss: 4 RandAugment "
        "candidates per example scored by a small CNN (2 conv layers), no Pillow counterpart.",
        "",
        "| images | policy | coreaug img/s | coreaug 1 thread | Pillow img/s | speed-up | "
        "speed-up, 1 thread |",
        "|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
