"""faiss and torch each bring OpenMP: both must work, threaded, in one process."""
import os
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


WAIT_POLICY = """
import warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import {first}, {second}
print(sum("OMP_WAIT_POLICY" in str(w.message) for w in caught))
"""


@pytest.mark.parametrize("first, second, policy, warned", [
    ("torch", "coreaug", None, 1), ("coreaug", "torch", None, 0), ("torch", "coreaug", "PASSIVE", 0)])
def test_importing_coreaug_after_torch_warns_that_the_wait_policy_comes_too_late(first, second, policy, warned):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update({"OMP_NUM_THREADS": "1"}, **({"OMP_WAIT_POLICY": policy} if policy else {}))
    proc = subprocess.run([sys.executable, "-c", WAIT_POLICY.format(first=first, second=second)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(warned)]
