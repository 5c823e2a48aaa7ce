"""compile needs torch 2.9 or later: refused before anything is written on an older torch; the
compile tests elsewhere are skipped there (`needs_compile`)."""
import pytest
import torch

import coreaug
from coreaug.training.compiled_step import compile_supported

needs_compile = pytest.mark.skipif(not compile_supported(), reason=f"compile needs torch 2.9 or later, "
                                                                    f"this is {torch.__version__}")


@pytest.mark.parametrize("version,supported", [("2.3.1", False), ("2.8.0+cu128", False), ("2.9.1", True),
                                               ("2.10.0a0+git4c2d1f3", True), ("2.13.0+cpu", True),
                                               ("3.0.0", True), ("10.1", True), ("1.13.1", False)])
def test_compile_is_supported_from_torch_2_9(version, supported):
    assert compile_supported(version) is supported


def test_compile_on_an_older_torch_is_refused_in_one_line_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.8.0+cu128")
    config = coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=16, batch_size=16, epochs=1,
                                 quiet=True, compile=True, out=str(tmp_path / "run"))
    with pytest.raises(coreaug.UsageError, match=r"^compile needs torch 2\.9 or later, and this is torch "
                                                  r"2\.8\.0\+cu128: .*upgrade torch or drop --compile$"):
        coreaug.train(config)
    assert not (tmp_path / "run").exists()


@needs_compile
def test_compile_on_a_cpu_without_a_cpp_compiler_is_refused_in_one_line_before_anything_is_written(tmp_path):
    """inductor builds the CPU step with a C++ compiler; without one the run failed a minute in with a
    100-line traceback. torch reads $CXX into this setting."""
    from torch._inductor import config as inductor_config

    from coreaug.training.compiled_step import check_compilable

    config = coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=16, batch_size=16, epochs=1,
                                 quiet=True, compile=True, device="cpu", out=str(tmp_path / "run"))
    with inductor_config.patch({"cpp.cxx": (None, str(tmp_path / "no-such-g++"))}):
        with pytest.raises(coreaug.UsageError, match=r"^compile on the CPU needs a C\+\+ compiler, .*no-such-g\+\+.*"
                                                      r"install g\+\+ .*or drop --compile$"):
            coreaug.train(config)
        check_compilable(config, device="cuda")  # a GPU's step is built by Triton: no C++ compiler asked for
    assert not (tmp_path / "run").exists()
