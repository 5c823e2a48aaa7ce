"""What `import coreaug` and using a trained model load: not the modules only some commands need
(scipy.stats for reports, torch._dynamo for compiled steps, faiss, numba and scipy.sparse for the
rules that select by gradient estimates), which took seconds of every command."""
import os
import subprocess
import sys

import coreaug

HEAVY = ("scipy.stats", "scipy.io", "torch._dynamo", "faiss", "numba", "scipy.sparse")
SELECTION = ("faiss", "numba", "scipy.sparse")


def loaded_after(code, modules=HEAVY):
    out = subprocess.run([sys.executable, "-c", f"import sys\n{code}\n"
                          f"print(sorted(m for m in {modules!r} if m in sys.modules))"],
                         capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return out.stdout.strip().splitlines()[-1]


def test_importing_coreaug_loads_no_report_statistics_or_compiler():
    assert loaded_after("import coreaug") == "[]"


def test_the_command_line_loads_no_selection_libraries_until_a_rule_needs_them(tmp_path):
    """`coreaug --version` and a run of the default rule (random) load none of them (~0.4 s of every
    command); the coreset loads them at its first selection."""
    assert loaded_after("import coreaug.cli.main") == "[]"
    trained = loaded_after("import coreaug\n"
                           f"coreaug.train(coreaug.TrainConfig(dataset='synthetic', train_limit=64, test_limit=32, "
                           f"epochs=1, quiet=True, out={str(tmp_path / 'random')!r}))", SELECTION)
    assert trained == "[]"
    selected = loaded_after("import numpy as np, coreaug\n"
                            "coreaug.select_coreset(np.eye(4, dtype=np.float32), np.array([0, 0, 1, 1]), 0.5)")
    assert selected == repr(sorted(SELECTION))


def test_predicting_with_a_trained_run_loads_no_compiler(tmp_path):
    coreaug.train(coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=32, epochs=1, quiet=True,
                                      out=str(tmp_path / "run")))
    code = ("import coreaug, torch\n"
            f"run = coreaug.load_run({str(tmp_path / 'run')!r})\n"
            "print(run.predict(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)))")
    assert loaded_after(code) == "[]"
