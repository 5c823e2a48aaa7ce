"""experiments/bench_augment_ops.py's timing of the two CPU paths, and the table it writes."""


def test_both_paths_are_timed_with_the_path_the_cpu_takes(experiment, monkeypatch):
    bench = experiment("bench_augment_ops")
    monkeypatch.setattr(bench, "PATH_POLICIES", ("trivialaugment",))
    monkeypatch.setattr(bench, "PATH_SHAPES", ((3, 8), (1, 64)))
    monkeypatch.setattr(bench, "PATH_SIZES", (13,))
    from coreaug.augment.op_set import OpSet

    kept = OpSet.__dict__["use_dense"]
    rows = bench.path_seconds(1)
    assert OpSet.__dict__["use_dense"] is kept  # given back as a staticmethod: policies still call it
    assert list(rows) == ["trivialaugment@3x8px@13", "trivialaugment@1x64px@13"]
    assert [row["default"] for row in rows.values()] == ["dense", "kind by kind"]
    assert all(row["dense"] > 0 and row["by_kind"] > 0 for row in rows.values())
    now = {"counts": {}, "seconds": {}, "paths": rows, "load": "0", "commit": "abc", "threads": 1, "torch": "x"}
    monkeypatch.setattr(bench, "POLICIES", ())
    table = bench.render(now, {}, "python experiments/bench_augment_ops.py")
    line = next(line for line in table.splitlines() if line.startswith("| trivialaugment | 1x64px | 13 |"))
    assert line.endswith("| kind by kind |")
    ratio = rows["trivialaugment@1x64px@13"]["dense"] / rows["trivialaugment@1x64px@13"]["by_kind"]
    assert f"{ratio:.2f}" in line
