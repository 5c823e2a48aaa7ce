"""Coreset augmentation in a loop over device tensors: the tensor face of coreaug.CoresetAugmentation.

The training set lives on the device as one uint8 tensor; coreaug's batched policies augment
there; the epoch's plan arrives as device index tensors. Runs on Fashion-MNIST (Debian's
dataset-fashion-mnist, or --data-dir), on a GPU when there is one:

    python examples/own_loop_tensors.py [--epochs 3] [--limit 10000] [--data-dir DIR] [--seed 0] [--compile]

With --compile, augmentation, forward and loss are one torch.compile graph: the plan is laid
out in batches of one shape with their copies last (`fixed_steps`). Either way the policies draw
from a `coreaug.RandomSource` with a key per plan entry (`batches.draws`: seed, epoch, example
and copy), so an example is augmented the same eager or compiled (a torch.Generator would break the
compiled graph, and its draws depend on the batch).
"""
import argparse

import coreaug  # before torch: it sets OMP_WAIT_POLICY, read when torch loads OpenMP
import torch
import torch.nn.functional as F

from coreaug.training import compile_supported


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=10000)
    parser.add_argument("--data-dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="compile augmentation, forward and loss")
    args = parser.parse_args()
    if args.compile and not compile_supported():
        parser.error(f"--compile needs torch 2.9 or later (this is torch {torch.__version__}); drop --compile")
    torch.manual_seed(args.seed)  # the model's initial weights
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = coreaug.load_dataset("fashion-mnist", args.data_dir)
    images, labels = data.train_images[:args.limit].to(device), data.train_labels[:args.limit].to(device)
    test_images, test_labels = data.test_images[:2000].to(device), data.test_labels[:2000].to(device)

    def scale(x):
        return x.float() / 255

    method = coreaug.CoresetAugmentation(labels, strategy="coreset", fraction=0.3, seed=args.seed)
    weak, strong = coreaug.create_policy("weak"), coreaug.create_policy("randaugment")
    model = coreaug.create_model("cnn", 1, 10).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def step_loss(x, y, weights, keys, copies):
        """Weak augmentation for the batch, strong for its last `copies` rows, the weighted loss."""
        source = coreaug.RandomSource(keys)  # a key per row
        x = weak(x, source)
        if copies:
            x = torch.cat([x[:-copies], strong(x[-copies:], source.select(slice(-copies, None)))])
        return (F.cross_entropy(model(scale(x)), y, reduction="none") * weights).mean()

    compiled_loss = torch.compile(step_loss, fullgraph=True)  # compiled at its first call
    for epoch in range(args.epochs):
        plan = method.start_epoch(epoch, model, images, preprocess=scale)
        if args.compile:  # every batch of 128 with the same number of copies, last: one shape for every step
            plan = plan.fixed_steps(128, generator=torch.Generator().manual_seed(args.seed + epoch))
        batches = plan.on_device(128, device)
        draws = batches.draws(args.seed, epoch)  # a random stream per entry, reproducible by seed
        keys = draws.keys
        model.train()
        for step in range(batches.steps):
            take, strong_rows = batches.batch(step)
            idx = batches.indices[take]
            if args.compile:
                copies = batches.bounds[1] - batches.bounds[0]  # the same in every batch
                step_args = (images[idx], labels[idx], batches.weights[take], keys[take], copies)
                if epoch == 0 and step == 0:
                    with torch.no_grad():
                        step_loss(*step_args)  # once eagerly: the policies build their tables (one compile)
                loss = compiled_loss(*step_args)
            else:
                source = draws.source(take)
                x = weak(images[idx], source)
                if strong_rows is not None:  # this batch's copies of selected examples, their own draws
                    x = x.index_copy(0, strong_rows,
                                     strong(x.index_select(0, strong_rows), source.select(strong_rows)))
                loss = (F.cross_entropy(model(scale(x)), labels[idx], reduction="none")
                        * batches.weights[take]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(scale(test_images)).argmax(1) == test_labels).float().mean().item()
        print(f"epoch {epoch + 1}: {len(plan)} trained, {plan.n_augmented} augmented, "  # the plan laid out
              f"test accuracy {accuracy:.2%}")


if __name__ == "__main__":
    main()
