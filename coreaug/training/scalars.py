"""Each epoch's metrics as TensorBoard scalars (`coreaug train --tensorboard`)."""
import numbers


def scalar_tag(name):
    """TensorBoard's tag of a metrics.jsonl key, grouped so that like figures share a chart:
    train_loss -> loss/train, epoch_seconds -> seconds/epoch, selection_overlap ->
    selection/overlap, n_augmented -> examples/augmented; others keep their name (lr)."""
    if name.endswith("_seconds"):
        return "seconds/" + name[:-len("_seconds")]
    for split in ("train", "test"):
        if name.startswith(split + "_"):
            return f"{name[len(split) + 1:]}/{split}"
    if name.startswith("selection_"):
        return "selection/" + name[len("selection_"):]
    if name.startswith("n_"):
        return "examples/" + name[2:]
    return "selection/selected" if name == "selected" else name


class TensorBoardScalars:
    """Writes one epoch's metrics (a metrics.jsonl row) at a time to an event file in `folder`;
    the step is the number of epochs done. Needs the tensorboard package."""

    def __init__(self, folder, purge_step=None):
        """`purge_step`: TensorBoard drops what earlier event files hold from that step on (the
        epochs a resumed run writes again)."""
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=folder, purge_step=purge_step)

    def write(self, metrics):
        """Every number in `metrics` (booleans as 0/1; None and text left out) and a per-class list
        of numbers (selection_objective: facility location per class) as its sum over the classes,
        the objective of the whole selection; then flush."""
        step = metrics["epoch"] + 1
        for name, value in metrics.items():
            if isinstance(value, list) and value and all(isinstance(v, numbers.Real) for v in value):
                value = sum(value)
            if name != "epoch" and isinstance(value, numbers.Real):
                self.writer.add_scalar(scalar_tag(name), float(value), step)
        self.writer.flush()

    def close(self):
        self.writer.close()
