"""Epoch seconds of coreaug.train with the strong copies augmented one step per call against
several steps per call (`augment_steps`), on synthetic CIFAR-shaped data.

Usage: python experiments/gpu_augment_steps.py [--device cuda] [--train-limit 25000] [--epochs 2]
           [--steps 1,8] [--out experiments/results/gpu_augment_steps.md]
Each run's epochs after the first are averaged (the first also loads kernels).
"""
import argparse
import statistics

import coreaug  # first: it sets OMP_WAIT_POLICY before torch loads OpenMP
import torch

from bench_augment_chunks import write_markdown  # experiments/ is the script's folder
from script_checks import checked, positive_list


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda or cpu (default: %(default)s)")
    parser.add_argument("--train-limit", type=int, default=25000,
                        help="synthetic-cifar training images of each run (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=2,
                        help="epochs of each run; the first is left out of the mean (default: %(default)s)")
    parser.add_argument("--steps", type=positive_list, default="1,8",
                        help="augment_steps to compare (steps' batches per augmentation call), comma-separated "
                             "(default: %(default)s)")
    parser.add_argument("--out", default="experiments/results/gpu_augment_steps.md",
                        help="the markdown table's path (default: %(default)s)")
    args = checked(parser, parser.parse_args(), min_epochs=2)
    lines = ["| strategy | strong augmentation | steps per call | epoch s | test acc |", "|---|---|---|---|---|"]
    for strategy, augment in (("full", "randaugment"), ("coreset", "randaugment"), ("full", "autoaugment")):
        for steps in args.steps:
            result = coreaug.train(coreaug.TrainConfig(
                dataset="synthetic-cifar", model="resnet20", train_limit=args.train_limit, test_limit=2000,
                epochs=args.epochs, strategy=strategy, subset=0.1, augment=augment, device=args.device,
                augment_steps=steps, quiet=True))
            seconds = statistics.fmean(m["epoch_seconds"] for m in result.history[1:])
            lines.append(f"| {strategy}{' 10%' if strategy == 'coreset' else ''} | {augment} | {steps} | {seconds:.2f} | "
                         f"{result.final_test_accuracy:.2%} |")
            print(lines[-1], flush=True)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    write_markdown(args.out, "Trainer epochs with the augmentation of several steps per call",
                   f"python experiments/gpu_augment_steps.py --device {args.device} --train-limit {args.train_limit} "
                   f"--epochs {args.epochs} --steps {','.join(map(str, args.steps))} --out {args.out}",
                   f"{device}, torch {torch.__version__}; resnet20, batch 128, append mode, R = 1; epoch seconds "
                   f"are the mean of epochs 2 to {args.epochs} (training and selection, evaluation excluded).", lines)


if __name__ == "__main__":
    main()
