"""faiss and torch each bring OpenMP: both must work, threaded, in one process."""
import subprocess
import sys

import pytest

SCRIPT = """
import {first}, {second}
import numpy as np, torch, faiss
torch.set_num_threads(2); faiss.omp_set_num_threads(2)
x = np.random.default_rng(0).normal(size=(4000, 32)).astype('float32')
index = faiss.IndexFlatL2(32); index.add(x)
_, nn = index.search(x, 5)
assert (nn[:, 0] == np.arange(4000)).all()
a = torch.from_numpy(x); assert torch.allclose((a @ a.T).diagonal(), (a * a).sum(1), rtol=1e-4)
_, nn2 = index.search(x, 5)
assert (nn == nn2).all()
print("ok")
"""


@pytest.mark.parametrize("first, second", [("torch", "faiss"), ("faiss", "torch")])
def test_faiss_and_torch_share_a_process_in_either_import_order(first, second):
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(first=first, second=second)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
