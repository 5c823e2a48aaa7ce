"""Trainer benchmark: epoch seconds and examples/s per strategy, selection time apart.

Usage:
    python experiments/bench_trainer.py [--dataset fashion-mnist] [--model cnn] [--epochs 2]
        [--train-limit N] [--device cpu|cuda] [--precision auto] [--compile]
        [--out experiments/results/trainer.md]

Runs `none`, `full` and `coreset` (append mode) at 10/30/50% with R = 1 (selection every
epoch) and reports, per run, the mean over the epochs after the first of: epoch seconds (training plus
selection, evaluation excluded), selection seconds split into gradient estimates and
facility location, and trained examples per second. Targets: a coreset epoch at fraction f
costs at most 10% more than (1 + f) / 2 of a `full` epoch, and selection is at most 10% of an epoch.
A last run uses `estimates="training"` (the previous epoch's training logits instead of an
extra pass over the clean training set).

Two more columns: syncing ops per training step (coreaug.training.sync_audit on a small
synthetic run with the same strategy and policy: 0 means the step never waits on the device),
and the augmentation's share of the epoch (weak and strong policies timed alone on the device,
times the epoch's counts, over the epoch seconds).
"""
import argparse
import platform
import statistics
import time

import torch

import coreaug
from coreaug.augment import create_policy
from coreaug.training.sync_audit import syncs_per_step

AUDIT = dict(dataset="synthetic", train_limit=96, test_limit=32, epochs=1, quiet=True, candidates=2)


def measure(base, **overrides):
    result = coreaug.train(coreaug.TrainConfig(**base, **overrides))
    epochs = result.history[1:]  # steady state: the first epoch also loads kernels and, with
    #                              estimates="training", makes the one clean estimation pass
    mean = lambda key: statistics.fmean(m[key] for m in epochs)  # noqa: E731
    return {
        "epoch": mean("epoch_seconds"), "selection": mean("selection_seconds"),
        "estimate": mean("estimate_seconds"), "facility": mean("facility_location_seconds"),
        "n_trained": epochs[0]["n_trained"], "n_augmented": epochs[0]["n_augmented"],
        "accuracy": result.final_test_accuracy,
    }


def seconds_per_image(policy, images, repeats=5):
    """Best time per image of `policy` on a batch on its device."""
    device = images.device
    generator = torch.Generator(device=device).manual_seed(0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = float("inf")
    for _ in range(repeats + 1):
        sync()
        start = time.perf_counter()
        policy(images, generator)
        sync()
        best = min(best, time.perf_counter() - start)
    return best / len(images)


def augmentation_costs(args):
    """(weak, strong) seconds per image on the device, on a training-sized batch of the dataset's shape."""
    data = coreaug.load_dataset(args.dataset, progress=False)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    images = data.train_images[:512].to(device)
    strong = "randaugment" if args.augment == "maxloss" else args.augment  # max-loss needs a model: not timed alone
    return seconds_per_image(create_policy("weak"), images), seconds_per_image(create_policy(strong), images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--augment", default="randaugment")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", default="experiments/results/trainer.md")
    args = parser.parse_args()
    base = dict(dataset=args.dataset, model=args.model, epochs=args.epochs, train_limit=args.train_limit,
                augment=args.augment, device=args.device, quiet=True, select_every=1, precision=args.precision,
                compile=args.compile)
    runs = [("none", None, "clean"), ("full", None, "clean"), ("coreset", 0.1, "clean"), ("coreset", 0.3, "clean"),
            ("coreset", 0.5, "clean"), ("coreset", 0.1, "training"), ("coreset", 0.3, "training")]
    weak_cost, strong_cost = augmentation_costs(args)
    rows = {}
    for strategy, fraction, estimates in runs:
        settings = dict(strategy=strategy, estimates=estimates, **({"subset": fraction} if fraction else {}))
        rows[(strategy, fraction, estimates)] = r = measure(base, **settings)
        r["syncs"], _ = syncs_per_step(AUDIT, augment=args.augment, **settings)
        r["augment_share"] = (r["n_trained"] * weak_cost + r["n_augmented"] * strong_cost) / r["epoch"]
        print(f"{strategy} {fraction or ''} {estimates}: {r['epoch']:.1f} s/epoch, selection {r['selection']:.2f} s, "
              f"{r['syncs']:g} syncs/step", flush=True)
    full = rows[("full", None, "clean")]["epoch"]
    lines = ["| strategy | fraction | estimates | trained/epoch | epoch s | examples/s | selection s (estimates + facility location) "
             "| selection share | epoch / full | target (1+f)/2 | at most target + 10% | augmentation share | syncs / step "
             "| test acc |", "|" + "---|" * 14]
    for (strategy, fraction, estimates), r in rows.items():
        ratio = r["epoch"] / full
        target = (1 + fraction) / 2 if fraction else None
        lines.append(
            f"| {strategy} | {fraction or '—'} | {estimates if fraction else '—'} | {r['n_trained']} | {r['epoch']:.1f} | {r['n_trained'] / r['epoch']:.0f} | "
            f"{r['selection']:.2f} ({r['estimate']:.2f} + {r['facility']:.2f}) | {r['selection'] / r['epoch']:.1%} | "
            f"{ratio:.3f} | {f'{target:.2f}' if target else '—'} | "
            f"{('yes' if ratio <= 1.1 * target else 'no') if target else '—'} | {r['augment_share']:.1%} | {r['syncs']:g} "
            f"| {r['accuracy']:.2%} |")
    command = (f"python experiments/bench_trainer.py --dataset {args.dataset} --model {args.model} --epochs {args.epochs}"
               + (f" --train-limit {args.train_limit}" if args.train_limit else "")
               + f" --augment {args.augment} --device {args.device} --precision {args.precision}"
               + (" --compile" if args.compile else "") + f" --out {args.out}")
    device = (torch.cuda.get_device_name() if args.device.startswith("cuda")
              else f"{platform.machine()} CPU, {torch.get_num_threads()} threads")
    text = "\n\n".join([
        "# Trainer benchmark", f"Command: `{command}`  \nDevice: {device}, torch {torch.__version__}. "
        f"Mode append, R = 1, strong augmentation {args.augment}; seconds are means over epochs 2 to {args.epochs} "
        "(the first also loads kernels, and makes the one clean estimation pass of estimates=training), "
        f"evaluation excluded. Augmentation alone: weak {weak_cost * 1e6:.1f} µs/image, strong "
        f"{strong_cost * 1e6:.1f} µs/image on this device (batches of 512).", "\n".join(lines)]) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
