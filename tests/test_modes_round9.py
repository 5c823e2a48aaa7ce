"""Scoring and max-loss leave each submodule's train/eval mode as the user set it, and refuse what
they cannot score with in one line."""
import contextlib

import pytest
import torch
from torch import nn

import coreaug
from coreaug.augment import MaxLossAugment, Policy
from coreaug.errors import UsageError

N = 40


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(8, 3))


def modes(model):
    return [m.training for m in model.modules()]


def data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(N, 1, 4, 4, generator=g), torch.arange(N) % 3


class KeepImages(Policy):
    def __call__(self, images, generator=None, **context):
        return images


def score_with_maxloss(model, images, labels):
    MaxLossAugment(KeepImages(), candidates=2)(images, model=model, labels=labels)


def score_with_start_epoch(model, images, labels):
    coreaug.CoresetAugmentation(labels, strategy="coreset", fraction=0.5).start_epoch(0, model, images)


def score_with_estimate_gradients(model, images, labels):
    coreaug.estimate_gradients(model, images, labels, kind="last_layer")


@pytest.mark.parametrize("score", [score_with_estimate_gradients, score_with_start_epoch, score_with_maxloss])
def test_scoring_gives_every_submodule_its_own_mode_back(score):
    images, labels = data()
    model = tiny_model()
    seen = []
    model[2].register_forward_hook(lambda m, i, o: seen.append(m.training))
    for root, frozen in ((True, False), (False, True)):  # frozen BatchNorm in training; dropout on in eval
        model.train(root)
        model[2].train(frozen)
        model[4].train(frozen)
        before = modes(model)
        score(model, images, labels)
        assert modes(model) == before
    assert seen and not any(seen)  # scored in eval mode all the same


def test_a_one_logit_model_is_refused_as_logit_gradients_refuses_its_logits():
    images, labels = data()
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    with pytest.raises(UsageError, match=r"n_classes >= 2, got shape \(40, 1\)"):
        coreaug.estimate_gradients(model, images, torch.zeros(N, dtype=torch.long))
    with pytest.raises(UsageError, match="n_classes >= 2"):  # not "labels must be < n_classes=1"
        coreaug.estimate_gradients(model, images, labels % 2, kind="last_layer")


def test_a_dataloader_as_images_is_told_to_pass_its_dataset():
    images, labels = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=16)
    with pytest.raises(UsageError, match=r"got a DataLoader; pass its dataset \(loader.dataset\)"):
        coreaug.estimate_gradients(tiny_model(), loader, labels)

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(zip(images, labels))
    with pytest.raises(UsageError, match="got a Stream; pass a map-style dataset"):
        coreaug.estimate_gradients(tiny_model(), Stream(), labels)


def test_a_plain_function_as_the_model_is_one_line():
    images, labels = data()
    model = tiny_model()
    with pytest.raises(UsageError, match="model must be a torch.nn.Module .* got a function; wrap it in one"):
        coreaug.estimate_gradients(lambda x: model(x), images, labels, device="cpu")
    with pytest.raises(UsageError, match="model must be a torch.nn.Module .* got a function"):
        score_with_maxloss(lambda x: model(x), images, labels)


def test_maxloss_refuses_a_context_for_autocast_and_a_string_for_preprocess():
    images, labels = data()
    policy = MaxLossAugment(KeepImages(), candidates=2)
    with pytest.raises(UsageError, match=r"autocast must be a zero-argument .* got autocast\(\.\.\.\), a context"):
        policy(images, model=tiny_model(), labels=labels, autocast=torch.autocast("cpu", dtype=torch.bfloat16))
    with pytest.raises(UsageError, match="preprocess must be a function .* got a str"):
        policy(images, model=tiny_model(), labels=labels, preprocess="scale")
    for factory in (contextlib.nullcontext, lambda: torch.autocast("cpu", dtype=torch.bfloat16)):
        policy(images, model=tiny_model(), labels=labels, autocast=factory)  # factories are fine


def test_maxloss_says_its_base_policy_got_the_images_repeated():
    images = torch.zeros(4, 4, 20, 37, dtype=torch.uint8)
    policy = coreaug.create_policy("maxloss", candidates=4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4 * 20 * 37, 3))
    with pytest.raises(UsageError, match=r"4 channels .*base policy is given the 4 images 4 times over"):
        policy(images, model=model, labels=torch.zeros(4, dtype=torch.long))
