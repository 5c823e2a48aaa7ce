"""The selection schedule as the docs state it, in the own loop as in the trainer."""
import pytest
import torch

import coreaug


def test_the_own_loop_refuses_a_warm_up_past_its_last_selection_as_train_does():
    labels = torch.arange(40) % 4
    with pytest.raises(coreaug.UsageError, match=r"selection_warmup \(5\) must be at most 1, the epoch of the run's "
                                                 r"last selection \(epochs 2, select_every 1\)"):
        coreaug.CoresetAugmentation(labels, fraction=0.5, strategy="coreset", epochs=2, selection_warmup=5)
    with pytest.raises(coreaug.UsageError, match=r"selection_warmup \(5\) must be at most 1"):
        coreaug.TrainConfig(dataset="digits", strategy="coreset", epochs=2, selection_warmup=5).resolved()
    # the last selection itself may be the first by the model; random reads no model; no epochs, nothing known
    last = coreaug.CoresetAugmentation(labels, fraction=0.5, strategy="coreset", epochs=2, selection_warmup=1)
    assert last.selection_warmup == 1
    coreaug.CoresetAugmentation(labels, fraction=0.5, strategy="random", epochs=2, selection_warmup=5)
    coreaug.CoresetAugmentation(labels, fraction=0.5, strategy="coreset", selection_warmup=5)
