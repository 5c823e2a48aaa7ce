"""Augmentation per step against augmentation of several steps' batches in one call.

On a GPU a RandAugment call costs about the same for 64 images as for 2,048 (experiments/
results/gpu.md): the call, not the images, is the cost. This measures what the trainer would
save by augmenting K steps' batches at once: per step, the weak policy on the batch and the
strong policy on its copies (as coreaug.train does now), against one weak call on K batches and
one strong call on their copies, then K slices. Augmentation only (no model), uint8 images of
CIFAR's shape resident on the device, the trainer's batch layout (half the batch copies, as in
full augmentation). Times are the best of `--repeats` passes over `--steps` steps.

Usage: python experiments/bench_augment_chunks.py [--device cuda] [--batch 128] [--steps 96]
           [--chunks 1,4,8,16] [--strong randaugment] [--out experiments/results/augment_chunks.md]
"""
import argparse

import coreaug  # noqa: F401 (first: it sets OMP_WAIT_POLICY before torch loads OpenMP)
import torch

from bench_augment import best_seconds  # experiments/ is the script's folder
from coreaug.augment import create_policy
from script_checks import checked, positive, positive_list


def augment_steps(images, rows, weak, strong, generator, chunk, batch):
    """Weak on every step's batch, strong on its copy rows, `chunk` steps per call; returns the last batch."""
    copies = torch.arange(batch // 2, batch, device=images.device)  # the second half of each batch: copies
    out = None
    for first in range(0, len(rows), chunk):
        block = rows[first:first + chunk]
        x = weak(images.index_select(0, torch.cat(block)), generator)
        strong_rows = torch.cat([copies + i * batch for i in range(len(block))])
        x = x.index_copy(0, strong_rows, strong(x.index_select(0, strong_rows), generator))
        for part in x.split(batch):
            out = part
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the images stay there)")
    parser.add_argument("--batch", type=positive, default=128,
                        help="images per step; its second half are the copies the strong policy augments "
                             "(default: %(default)s)")
    parser.add_argument("--steps", type=positive, default=96, help="steps per timed pass (default: %(default)s)")
    parser.add_argument("--chunks", type=positive_list, default="1,4,8,16",
                        help="steps per call K to compare, comma-separated; the first is the ratio's baseline "
                             "(default: %(default)s)")
    parser.add_argument("--strong", default="randaugment",
                        help="the strong policy on the copies, a create_policy name (default: %(default)s)")
    parser.add_argument("--repeats", type=positive, default=3,
                        help="timed passes over --steps steps (best kept; default: %(default)s)")
    parser.add_argument("--out", default="experiments/results/augment_chunks.md",
                        help="the markdown table's path (default: %(default)s)")
    args = checked(parser, parser.parse_args())
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randint(0, 256, (4096, 3, 32, 32), dtype=torch.uint8, generator=generator, device=device)
    order = torch.randint(0, len(images), (args.steps * args.batch,), generator=generator, device=device)
    rows = list(order.split(args.batch))
    weak, strong = create_policy("weak"), create_policy(args.strong)
    lines = [f"| steps per call | ms per step | vs one step per call |", "|---|---|---|"]
    base = None
    for chunk in args.chunks:
        seconds = best_seconds(lambda: augment_steps(images, rows, weak, strong, generator, chunk, args.batch),
                               args.repeats, sync)
        per_step = 1000 * seconds / args.steps
        base = base or per_step
        lines.append(f"| {chunk} | {per_step:.2f} | {base / per_step:.1f}x |")
        print(lines[-1], flush=True)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    write_markdown(
        args.out, "Augmentation of several steps in one call",
        f"python experiments/bench_augment_chunks.py --device {args.device} --batch {args.batch} "
        f"--steps {args.steps} --chunks {','.join(map(str, args.chunks))} --strong {args.strong} --out {args.out}",
        f"{where}, torch {torch.__version__}. Per step: weak on a batch of {args.batch} uint8 3x32x32 images and "
        f"{args.strong} on its {args.batch // 2} copy rows; with K steps per call, one weak call on K batches and one "
        f"strong call on their copies. Augmentation only; best of {args.repeats} passes over {args.steps} steps.",
        lines)


def write_markdown(out, title, command, about, lines):
    """Write a result file: the title, the command that made it, what was measured, the table."""
    with open(out, "w") as f:
        f.write("\n".join([f"# {title}", "", f"Command: `{command}`", "", about, "", *lines, ""]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
