"""The examples/ scripts run on Fashion-MNIST and learn."""
import os
import re
import subprocess
import sys

import pytest

from test_compile_support import needs_compile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE_FASHION = os.path.exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


@pytest.mark.skipif(not HAVE_FASHION, reason="Debian's dataset-fashion-mnist is not installed")
@pytest.mark.parametrize("script", ["own_loop_dataloader.py", "own_loop_tensors.py", pytest.param("own_loop_tensors.py --compile", marks=needs_compile)])
def test_example_trains_on_fashion_mnist(script):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script.split()[0]), *script.split()[1:],
                           "--epochs", "2", "--limit", "2000"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    accuracies = [float(a) for a in re.findall(r"test accuracy ([\d.]+)%", proc.stdout)]
    assert len(accuracies) == 2 and accuracies[-1] > 30  # chance is 10%
    trained, augmented = map(int, re.search(r"(\d+) trained, (\d+) augmented", proc.stdout).groups())
    if "--compile" in script:  # the plan laid out in whole batches of 128, as many copies in each
        assert trained % 128 == 0 and 2600 <= trained < 2600 + 128 and 600 <= augmented < 600 + trained // 128
    else:
        assert (trained, augmented) == (2600, 600)  # 2,000 originals + copies of a 30% coreset
