"""Round 17: a model's function that raises is one line naming the user's line."""
import sys

import pytest
from torch import nn

from coreaug.errors import UsageError
from coreaug.models import create_model, registry


def test_a_model_function_that_raises_is_named_with_its_line(tmp_path, monkeypatch):
    (tmp_path / "r17nets.py").write_text(
        "import torch.nn as nn\n"
        "def net(in_channels, num_classes):\n"
        "    return nn.Conv2d(in_channels, 8, kernel=3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "r17nets", raising=False)
    with pytest.raises(UsageError, match=r"called as net\(in_channels=1, num_classes=10\), raised TypeError: "
                                         r".*'kernel' at .*r17nets.py:3 in net$") as caught:
        create_model("r17nets:net", 1, 10)
    assert isinstance(caught.value.__cause__, TypeError)  # the user's error stays chained for a debugger

    def registered(in_channels, num_classes):
        return nn.Linear(in_channels, num_classes.width)

    monkeypatch.setitem(registry._MODELS, "r17-raises", registered)  # as register_model("r17-raises") does
    with pytest.raises(UsageError, match=r"'r17-raises', called as registered\(in_channels=3, num_classes=4\), "
                                         r"raised AttributeError: .*test_round17.py:\d+ in registered$"):
        create_model("r17-raises", 3, 4)


def test_an_error_raised_in_coreaug_alone_keeps_its_traceback(monkeypatch):
    monkeypatch.setitem(registry._MODELS, "r17-own", registry._names_module)  # a defect of coreaug's: no user frame
    with pytest.raises(AttributeError, match="startswith"):
        create_model("r17-own", 3, 4)
