"""Weight initialisation shared by every model."""
from torch import nn


def kaiming_init(model: nn.Module) -> None:
    """Kaiming-normal convolutions (fan-out, ReLU gain), unit/zero batch norms.

    The final ``nn.Linear`` keeps PyTorch's default (Kaiming-uniform with a=sqrt(5)), which
    gives small initial logits and so a loss near log(num_classes) at step 0.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
