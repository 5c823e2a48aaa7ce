"""Coreset augmentation in a DataLoader loop: the dataset face of coreaug.CoresetAugmentation.

A map-style dataset of (PIL image, label) pairs, per-image transforms in DataLoader workers, a
training loop of your own. Runs on Fashion-MNIST (Debian's dataset-fashion-mnist, or
--data-dir) in a few minutes on a CPU:

    python examples/own_loop_dataloader.py [--epochs 3] [--limit 10000] [--data-dir DIR] [--seed 0]

With torchvision, `weak` and `strong` would be e.g. `T.Compose([T.RandomCrop(28, 4),
T.RandomHorizontalFlip(), T.ToTensor()])` and `T.Compose([T.RandAugment(), T.ToTensor()])`;
here they are written with Pillow so that the example needs nothing more than coreaug.
"""
import argparse

import coreaug  # before torch: it sets OMP_WAIT_POLICY, read when torch loads OpenMP
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps


class FashionMNIST(torch.utils.data.Dataset):
    """(PIL image, label) pairs, as torchvision's datasets give them."""

    def __init__(self, images, labels, transform=None):
        self.images, self.targets, self.transform = images, labels.tolist(), transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        image = Image.fromarray(self.images[i, 0].numpy())
        return (self.transform(image) if self.transform else image), self.targets[i]


def to_tensor(image):
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)[None]


def weak(image):  # pad-and-crop by up to 4 pixels, then a coin-flip mirror
    dx, dy = np.random.randint(-4, 5, size=2)
    image = image.transform(image.size, Image.AFFINE, (1, 0, dx, 0, 1, dy))
    return to_tensor(ImageOps.mirror(image) if np.random.rand() < 0.5 else image)


def strong(image):  # a rotation and an autocontrast or equalize, on top of the weak ones
    image = image.rotate(np.random.uniform(-30, 30))
    image = ImageOps.equalize(image) if np.random.rand() < 0.5 else ImageOps.autocontrast(image)
    return weak(image)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=10000)
    parser.add_argument("--data-dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)  # the model's initial weights and the workers' augmentation seeds
    data = coreaug.load_dataset("fashion-mnist", args.data_dir)
    images, labels = data.train_images[:args.limit], data.train_labels[:args.limit]

    train_set = FashionMNIST(images, labels)
    method = coreaug.CoresetAugmentation(train_set.targets, strategy="coreset", fraction=0.3, seed=args.seed)
    loader = torch.utils.data.DataLoader(method.dataset(train_set, weak=weak, strong=strong), batch_size=128,
                                         sampler=method.sampler(), num_workers=2)
    model = coreaug.create_model("cnn", 1, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    for epoch in range(args.epochs):
        method.start_epoch(epoch, model, FashionMNIST(images, labels, to_tensor), batch_size=256)
        model.train()
        for x, y, w in loader:
            loss = (F.cross_entropy(model(x), y, reduction="none") * w).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            test = data.test_images[:2000].float() / 255
            accuracy = (model(test).argmax(1) == data.test_labels[:2000]).float().mean().item()
        print(f"epoch {epoch + 1}: {len(method.plan)} trained, {method.plan.n_augmented} augmented, "
              f"test accuracy {accuracy:.2%}")


if __name__ == "__main__":
    main()
