"""experiments/bench_step_ops.py counts a step's ops, kernels and the strong policy's share, and
its table says what it counted."""
import pytest

SMALL = dict(dataset="digits", model="cnn", train_limit=256, batch_size=64)


def test_a_step_is_counted_by_part_and_the_strong_policy_is_most_of_an_augmented_steps_kernels(experiment):
    bench = experiment("bench_step_ops")
    augmented = bench.count(dict(SMALL, strategy="random", subset=0.3, augment="randaugment"))
    weak_only = bench.count(dict(SMALL, strategy="none"))
    assert augmented["steps"] >= 4 and weak_only["steps"] == 4
    assert weak_only["kernels"] < weak_only["ops"] and augmented["kernels"] < augmented["ops"]
    assert augmented["strong"] > max(10 * weak_only["strong"], augmented["kernels"] / 3)
    assert augmented["kernels"] - weak_only["kernels"] > 100  # a RandAugment call: about 135 kernels
    assert augmented["syncs"] == weak_only["syncs"] == 0


def test_the_table_names_both_trees_and_marks_rows_the_older_tree_did_not_count(experiment):
    bench = experiment("bench_step_ops")
    now = {name: dict(ops=400.0, kernels=250.0, strong=150.0, syncs=0.0, steps=10) for name in list(bench.CONFIGS)[:2]}
    before = {list(bench.CONFIGS)[0]: dict(ops=450.0, kernels=300.0, strong=200.0, syncs=0.0, steps=10)}
    table = bench.render(now, before, "python experiments/bench_step_ops.py", "/tmp/old")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "ops before" not in line]
    assert rows[0].split(" | ")[1:7] == ["450", "400", "300", "250", "200", "150"]
    assert rows[1].split(" | ")[1:3] == ["—", "400"]
    assert "before: /tmp/old" in table


def test_unknown_rows_are_refused_before_counting(experiment, capsys):
    for rows in ("0,99", "-1", "1,x", ""):
        with pytest.raises(SystemExit) as refused:
            experiment("bench_step_ops").main(["--configs", rows])
        assert refused.value.code == 2 and "--configs takes numbers from 0 to" in capsys.readouterr().err
