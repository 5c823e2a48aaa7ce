"""What `import coreaug` and using a trained model load: not the modules only some commands need
(scipy.stats for reports, torch._dynamo for compiled steps), which took seconds of every command."""
import os
import subprocess
import sys

import coreaug

HEAVY = ("scipy.stats", "scipy.io", "torch._dynamo")


def loaded_after(code):
    out = subprocess.run([sys.executable, "-c", f"import sys\n{code}\n"
                          f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"],
                         capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return out.stdout.strip().splitlines()[-1]


def test_importing_coreaug_loads_no_report_statistics_or_compiler():
    assert loaded_after("import coreaug") == "[]"


def test_predicting_with_a_trained_run_loads_no_compiler(tmp_path):
    coreaug.train(coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=32, epochs=1, quiet=True,
                                      out=str(tmp_path / "run")))
    code = ("import coreaug, torch\n"
            f"run = coreaug.load_run({str(tmp_path / 'run')!r})\n"
            "print(run.predict(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)))")
    assert loaded_after(code) == "[]"
