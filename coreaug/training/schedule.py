"""Learning-rate schedules: linear warm-up, then cosine decay or step decay."""
import math


def learning_rate(config, epoch_progress):
    """The learning rate at `epoch_progress` (fractional epochs since the start, in [0, epochs]).

    Warm-up rises linearly from 0 over `warmup_epochs`; then `cosine` decays to 0 at the
    last epoch, or `multistep` divides by 10 at each milestone (fractions of the epochs; the
    warm-up ramps to the full rate whatever they say, so `TrainConfig` refuses a milestone
    within it).
    """
    if epoch_progress < config.warmup_epochs:
        return config.lr * epoch_progress / config.warmup_epochs
    if config.schedule == "cosine":
        span = config.epochs - config.warmup_epochs
        t = (epoch_progress - config.warmup_epochs) / span
        return config.lr * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    # rounded: 0.55 * 100 is 55.00000000000001, which would drop the rate one step into epoch 55, not at its start
    passed = sum(epoch_progress >= round(m * config.epochs, 9) for m in config.milestones)
    return config.lr * 0.1 ** passed
