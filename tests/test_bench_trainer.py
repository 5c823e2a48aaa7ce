"""experiments/bench_trainer.py: rows parsed from --rows, and one eager run's table and JSON."""
import json

import pytest

from test_compile_support import needs_compile


@pytest.fixture(scope="module")
def bench(experiment):
    return experiment("bench_trainer")


def test_rows_name_strategy_fraction_estimates_and_policy(bench):
    rows = bench.parse_rows("hand,none,random:0.1,coreset:0.3:training,maxloss:0.1@maxloss", "randaugment")
    assert [r.hand for r in rows] == [True, False, False, False, False]
    assert rows[1].augment == "weak" and rows[1].settings()["strategy"] == "none"
    assert rows[2].settings() == dict(strategy="random", estimates="clean", augment="randaugment", subset=0.1)
    assert rows[3].estimates == "training" and rows[3].fraction == 0.3
    assert rows[4].augment == "maxloss" and rows[4].settings()["augment"] == "maxloss"


def test_a_row_can_augment_several_steps_a_call_eagerly(bench, capsys):
    full, subset = bench.parse_rows("full/8,random:0.3@trivialaugment/4", "randaugment")
    assert full.settings() == dict(strategy="full", estimates="clean", augment="randaugment", augment_steps=8)
    assert subset.augment == "trivialaugment" and subset.fraction == 0.3 and subset.augment_steps == 4
    assert full.label() == "full, 8 steps a call" and bench.parse_rows("full", "randaugment")[0].augment_steps is None
    for bad in ("full/0", "full/x", "full/", "hand/4"):
        with pytest.raises(SystemExit, match="/K|no /K"):
            bench.parse_rows(bad, "randaugment")
    # --compile augments each step's own batch: the compiled row is skipped with coreaug's reason.
    args = bench.parse_args(["--dataset", "synthetic", "--train-limit", "64", "--batch-size", "16"])
    assert "augment_steps" in bench.compile_refusal(args, full)


def test_the_augmentation_share_times_the_calls_the_trainer_makes(bench, monkeypatch):
    import torch
    calls = []
    monkeypatch.setattr(bench, "seconds_per_call",
                        lambda policy, images, context=None: calls.append(len(images)) or 0.01)
    args = bench.parse_args(["--dataset", "synthetic", "--batch-size", "16", "--model", "cnn"])
    images, labels = torch.zeros(256, 3, 8, 8, dtype=torch.uint8), torch.zeros(256, dtype=torch.long)
    measured = {"steps": 10, "n_augmented": 40, "training_seconds": 1.0}
    one, = bench.parse_rows("random:0.25", "randaugment")
    assert bench.augmentation_share(args, one, measured, images, labels, 10) == pytest.approx(10 * 0.02)
    assert calls == [16, 4]  # a step's batch (weak), its copies (strong), once a step
    calls.clear()
    four, = bench.parse_rows("random:0.25/4", "randaugment")
    assert bench.augmentation_share(args, four, measured, images, labels, 10) == pytest.approx(3 * 0.02)
    assert calls == [64, 16]  # four steps' batches and copies, in ceil(10 / 4) calls
    calls.clear()
    maxloss, = bench.parse_rows("random:0.25@maxloss/4", "randaugment")  # scored by the model: a call a step
    assert bench.augmentation_share(args, maxloss, measured, images, labels, 10) == pytest.approx(10 * 0.02)
    assert calls == [16, 4]


def test_a_bad_mode_is_refused(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--modes", "eager,jit"])
    assert "--modes" in capsys.readouterr().err


def test_an_eager_run_writes_every_row_with_counts(bench, tmp_path):
    out, data = tmp_path / "table.md", tmp_path / "rows.json"
    out.write_text("# An earlier table\n\n| old |\n\n## Reading it\n\nWritten by hand.\n")
    bench.main(["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "16",
                "--epochs", "2", "--modes", "eager", "--rows", "hand,none,random:0.25", "--count-steps", "2",
                "--out", str(out), "--json", str(data)])
    rows = json.loads(data.read_text())["rows"]
    assert [(r["row"], r["mode"]) for r in rows] == [("hand", "eager"), ("none", "eager"), ("random 0.25", "eager")]
    hand, none, subset = rows
    assert none["n_trained"] == 64 and subset["n_trained"] == 80 and subset["n_augmented"] == 16
    assert none["steps"] == 4 and subset["steps"] == 5
    # Ops are counted per step: a weak-only step is the model, the loss and the update; the subset's
    # steps add a strong policy call on some of them.
    assert 30 < hand["ops_per_step"] and 30 < none["ops_per_step"] < subset["ops_per_step"]
    assert none["launches_per_step"] > 10 and none["syncs"] == 0
    assert all(0 < r["augment_share"] < 1 for r in rows)
    # Every epoch's seconds are kept (the first compiles; the table's mean is over the others).
    assert all(len(r["epochs_s"]) == 2 and r["epoch_seconds"] == pytest.approx(r["epochs_s"][1]) for r in rows)
    table = out.read_text()
    assert table.count("| hand |") == 1 and table.count("| coreaug |") == 2 and "Command: `python" in table
    assert "| old |" not in table and table.endswith("\n## Reading it\n\nWritten by hand.\n")  # kept below the table
    assert table.index("| hand |") < table.index("## Reading it")
    # Eager rows ask for no CUDA graphs: the column is empty for every row.
    assert "| CUDA graph skips |" in table and all(r["graph_skips"] is None for r in rows)


def test_the_hand_loops_compile_mode_follows_coreaugs_for_the_device(bench):
    assert bench.parse_args(["--device", "cpu"]).compile_mode is None  # torch's default mode, as coreaug's step
    assert bench.parse_args(["--device", "cuda"]).compile_mode == "reduce-overhead"  # CUDA graphs, as coreaug's
    assert bench.parse_args(["--device", "cuda", "--compile-mode", "default"]).compile_mode is None
    assert bench.parse_args(["--compile-mode", "max-autotune"]).compile_mode == "max-autotune"
    # coreaug's compiled rows are compiled in the same mode as the hand loop's.
    for argv, mode in ((["--device", "cuda"], "reduce-overhead"), (["--device", "cpu"], "default"),
                       (["--device", "cuda", "--compile-mode", "default"], "default")):
        args = bench.parse_args(argv)
        assert bench.coreaug_compile(args, True) == {"compile": True, "compile_mode": mode}
        assert bench.coreaug_compile(args, False) == {"compile": False}
        assert bench.train_config(args, **bench.coreaug_compile(args, True)).resolved().compile_mode == mode


@needs_compile
def test_a_row_the_compiled_step_refuses_is_skipped_with_its_reason(bench, tmp_path, capsys):
    args = bench.parse_args(["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "16",
                             "--epochs", "1"])
    crust, maxloss = bench.parse_rows("crust:0.1,maxloss:0.1@maxloss", "randaugment")
    assert "crust" in bench.compile_refusal(args, crust)
    assert bench.compile_refusal(args, maxloss) is None
    out, data = tmp_path / "table.md", tmp_path / "rows.json"
    bench.main(["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "16",
                "--epochs", "1", "--modes", "compiled", "--rows", "crust:0.1", "--count-steps", "0",
                "--out", str(out), "--json", str(data)])
    assert "compiled: skipped" in capsys.readouterr().out
    assert json.loads(data.read_text())["rows"] == []


def test_a_row_that_fails_is_named_and_the_rows_after_it_still_run(bench, tmp_path, monkeypatch):
    real = bench.measure_coreaug

    def measure(args, row, compiled):
        if row.strategy == "none":
            raise RuntimeError("out of memory\nmore detail")
        return real(args, row, compiled)

    monkeypatch.setattr(bench, "measure_coreaug", measure)
    out, data = tmp_path / "table.md", tmp_path / "rows.json"
    with pytest.raises(SystemExit, match="1 row"):
        bench.main(["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "16",
                    "--epochs", "1", "--modes", "eager", "--rows", "none,random:0.25", "--count-steps", "0",
                    "--out", str(out), "--json", str(data)])
    written = json.loads(data.read_text())
    assert [r["row"] for r in written["rows"]] == ["random 0.25"]
    assert written["failed"] == ["none @weak eager (RuntimeError: out of memory)"]
    assert "Failed: none @weak eager (RuntimeError: out of memory)." in out.read_text()


@needs_compile
@pytest.mark.parametrize("modes,resets_seen", [("compiled", [0, 1]), ("eager", [0, 0])])
def test_a_failed_compiled_row_leaves_no_compile_state_to_the_next(bench, tmp_path, monkeypatch, modes, resets_seen):
    """A compiled row that fails inside CUDA graph trees leaves them mid-warm-up: the rows after it
    start from dynamo's reset, as a new process would (eager rows need none)."""
    resets, seen = [], []
    monkeypatch.setattr(bench.torch._dynamo, "reset", lambda: resets.append(1))

    def measure(args, row, compiled, *rest):
        seen.append(len(resets))
        raise RuntimeError("accessing tensor output of CUDAGraphs that has been overwritten")

    monkeypatch.setattr(bench, "measure_row", measure)
    with pytest.raises(SystemExit, match="2 row"):
        bench.main(["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "16",
                    "--epochs", "1", "--modes", modes, "--rows", "none,random:0.25", "--count-steps", "0",
                    "--out", str(tmp_path / "table.md"), "--json", str(tmp_path / "rows.json")])
    assert seen == resets_seen and len(resets) == (2 if modes == "compiled" else 0)


def test_runtime_calls_per_step_are_two_epochs_less_one_and_tabled_on_cuda_only(bench):
    one = {"cudaLaunchKernel": (1000.0, 200), "cudaMalloc": (500.0, 3), "cudaDeviceSynchronize": (50.0, 2)}
    two = {"cudaLaunchKernel": (5000.0, 1000), "cudaMalloc": (500.0, 3), "cudaDeviceSynchronize": (60.0, 2),
           "cudaMemcpyAsync": (800.0, 40)}
    per_step = bench.calls_per_step(one, two, steps=4)
    assert per_step == {"cudaLaunchKernel": (1000.0, 200.0), "cudaMemcpyAsync": (200.0, 10.0)}  # set-up cancels
    row, = bench.parse_rows("none", "randaugment")
    measured = {"ms_per_step": 2.5, "host_calls": per_step}
    heading, table = bench.host_table([(row, "eager", measured)], top=1)
    assert "CUDA runtime" in heading
    assert table.splitlines()[2] == "| coreaug | eager | none | weak | 2.5 | 1.20 | 210 | cudaLaunchKernel 1000 µs x200 |"
    assert bench.host_table([(row, "eager", dict(measured, host_calls={}))]) == []  # the CPU: no table


@needs_compile
def test_a_compiled_row_that_fails_is_measured_again_in_the_fallback_mode(bench, tmp_path, monkeypatch):
    """--fallback-mode default: a compiled row that raised under CUDA graphs is measured again
    without them, from a reset torch.compile, and written as such; its failure stays named."""
    modes, resets = [], []
    monkeypatch.setattr(bench.torch._dynamo, "reset", lambda: resets.append(len(modes)))

    def measure(args, row, compiled, *rest):
        modes.append(args.compile_mode)
        if args.compile_mode == "reduce-overhead":
            raise RuntimeError("accessing tensor output of CUDAGraphs that has been overwritten")
        return dict(epoch_seconds=1.0, selection_seconds=0.0, training_seconds=1.0, n_trained=64, n_augmented=0,
                    steps=4, examples_per_s=64.0, ms_per_step=250.0, epochs_s=[2.0, 1.0])

    monkeypatch.setattr(bench, "measure_row", measure)
    out, data = tmp_path / "table.md", tmp_path / "rows.json"
    argv = ["--dataset", "synthetic", "--train-limit", "64", "--test-limit", "32", "--batch-size", "16",
            "--epochs", "2", "--modes", "compiled", "--rows", "none", "--count-steps", "0",
            "--compile-mode", "reduce-overhead", "--out", str(out), "--json", str(data)]
    with pytest.raises(SystemExit, match="1 row"):  # the failure in reduce-overhead is still reported
        bench.main(argv + ["--fallback-mode", "default"])
    assert modes == ["reduce-overhead", None] and resets == [1, 2]  # reset after each, before the retry
    written = json.loads(data.read_text())
    assert [(r["row"], r["mode"], r["fallback_mode"]) for r in written["rows"]] == [("none", "compiled", "default")]
    assert written["failed"][0].startswith("none @weak compiled (RuntimeError: accessing tensor output")
    assert "| coreaug | compiled (default mode) | none |" in out.read_text()
    assert "--fallback-mode default" in written["command"]
    # Without a fallback, or when the fallback is the mode that failed, the row is not tried again.
    for extra in ([], ["--fallback-mode", "reduce-overhead"]):
        modes.clear()
        with pytest.raises(SystemExit, match="1 row"):
            bench.main(argv + extra)
        assert modes == ["reduce-overhead"] and json.loads(data.read_text())["rows"] == []
    with pytest.raises(SystemExit):
        bench.parse_args(["--fallback-mode", "fast"])


def test_only_the_rows_of_the_count_modes_are_counted(bench, monkeypatch):
    """--count-modes eager: a compiled row is timed but not counted (its counting runs would
    compile the step three more times); the hand loop's compiled row likewise."""
    counted, hand_steps = [], []
    monkeypatch.setattr(bench, "measure_coreaug", lambda args, row, compiled: {"steps": 1})
    monkeypatch.setattr(bench, "count_coreaug", lambda args, row, compiled: counted.append(compiled) or (1, 1, {}))
    monkeypatch.setattr(bench, "syncs_per_step", lambda *a, **k: (0, None))
    monkeypatch.setattr(bench, "augmentation_share", lambda *a: 0.1)
    monkeypatch.setattr(bench, "run_hand_loop", lambda *a, count_steps, **k: hand_steps.append(count_steps) or {
        "epoch_seconds": [1.0], "steps_per_epoch": 1})
    args = bench.parse_args(["--count-modes", "eager", "--count-steps", "6"])
    assert args.count_modes == ["eager"] and "--count-modes eager" in bench.command_line(args)
    none, = bench.parse_rows("none", "randaugment")
    hand, = bench.parse_rows("hand", "randaugment")
    for compiled in (False, True):
        r = bench.measure_row(args, none, compiled, None, None, 10, {})
        assert ("ops_per_step" in r) is not compiled
        bench.measure_row(args, hand, compiled, None, None, 10, {})
    assert counted == [False] and hand_steps == [6, 0]
    assert "--count-modes" not in bench.command_line(bench.parse_args([]))  # both, the default
    with pytest.raises(SystemExit):
        bench.parse_args(["--count-modes", "eager,jit"])
