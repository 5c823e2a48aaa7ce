"""`coreaug report` and bench's tables on tiny fake grids: a labelled grid's speed-ups against its own
full, CSV figures out of range refused naming the row, and what the tables say where a column or a
table has nothing to show."""
import csv
import json
from types import SimpleNamespace

import pytest
from test_report import cells_csv, table_row, write_run

from coreaug.bench import write_report
from coreaug.errors import UsageError


def test_a_labelled_grid_with_full_but_no_none_takes_its_speedups_from_its_own_full(tmp_path):
    first, long = tmp_path / "A", tmp_path / "A-long"
    for seed, full in enumerate([0.50, 0.52]):  # target 99% of 51%: seed 0 of this full never reaches it
        write_run(first, "none", seed, [0.3, 0.45], epoch_seconds=1.0)
        write_run(first, "full", seed, [0.3, full], epoch_seconds=4.0)
        write_run(first, "random", seed, [0.3, 0.48], subset=0.1)
    write_run(long, "full", 0, [0.3, 0.6], epoch_seconds=8.0)  # 16 s in all, the target reached at 16 s
    write_run(long, "random", 0, [0.3, 0.6], subset=0.1, epoch_seconds=6.0)  # 12 s
    result = write_report(first, out=tmp_path / "out", also=[(long, "long")])
    rows = cells_csv(result)
    full, random = rows[("full", "long", "")], rows[("random", "long", "0.1")]
    # the label's own full row against the first grid's full (against itself it would always be 1.00x)
    assert float(full["speedup"]) == pytest.approx(8 / 16) and full["target_speedup"] == ""  # first full: no target
    assert float(random["speedup"]) == pytest.approx(16 / 12)
    assert float(random["target_speedup"]) == pytest.approx(16 / 12)
    # the share still takes the first grid's none and full: the labelled grid has no none of its own
    assert float(random["share_of_full_gain"]) == pytest.approx((60 - 45) / (51 - 45))
    assert float(rows[("random", "", "0.1")]["speedup"]) == pytest.approx(8 / 4)  # the first grid's own full
    text = (tmp_path / "out" / "report.md").read_text()
    assert table_row(text, "| random, long | 10% | 1 | 5.75 | 0.25 | 12 | 1.33x | 12 | 1/1 | 1.33x |")


@pytest.mark.parametrize("flag, column, row, message", [
    ("epoch_seconds", "seconds_per_epoch", "random,0.1,-1", "row 3 (random 0.1): seconds_per_epoch -1 is no time"),
    ("epoch_seconds", "seconds_per_epoch", "random,0.1,0", "row 3 (random 0.1): seconds_per_epoch 0 is no time"),
    ("epoch_seconds", "seconds_per_epoch", "none,,nan", "row 3 (none): seconds_per_epoch nan is no time"),
    ("epoch_seconds", "seconds_per_epoch", "random,0.1,inf", "row 3 (random 0.1): seconds_per_epoch inf is no time"),
    ("paper_figures", "accuracy", "random,0.1,0.75", "row 3 (random 0.1): accuracy 0.75 reads as a fraction; "
                                                     "give percent (75 for 0.75)"),
    ("paper_figures", "accuracy", "random,0.1,101", "row 3 (random 0.1): accuracy 101 is no percentage"),
    ("paper_figures", "accuracy", "random,0.1,nan", "row 3 (random 0.1): accuracy nan is no percentage"),
])
def test_a_csv_figure_out_of_range_is_refused_naming_its_row(tmp_path, flag, column, row, message):
    grid = tmp_path / "A"
    write_run(grid, "full", 0, [0.5])
    write_run(grid, "random", 0, [0.4], subset=0.1)
    figures = tmp_path / "figures.csv"
    figures.write_text(f"strategy,subset,{column}\nfull,,{2 if column.startswith('seconds') else 93.5}\n{row}\n")
    with pytest.raises(UsageError, match="figures.csv: " + message.replace("(", r"\(").replace(")", r"\)")):
        write_report(grid, out=tmp_path / "out", **{flag: figures})


def test_the_cli_refuses_paper_figures_given_as_fractions_in_one_line(tmp_path, capsys):
    from coreaug.cli.main import main
    grid = tmp_path / "A"
    write_run(grid, "full", 0, [0.5])
    (tmp_path / "paper.csv").write_text("strategy,subset,accuracy\nfull,,0.935\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(grid), "--out", str(tmp_path / "out"), "--paper-figures", str(tmp_path / "paper.csv")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "accuracy 0.935 reads as a fraction" in err


def test_a_share_without_a_gain_and_a_baseline_without_partners_say_why_and_runs_csv_names_seconds_alike(tmp_path):
    grid = tmp_path / "A"
    for seed in range(2):
        write_run(grid, "none", seed, [0.3, 0.52])
        write_run(grid, "full", seed, [0.3, 0.50])  # full below none: no gain to share
        write_run(grid, "random", seed, [0.3, 0.48], subset=0.1)
    result = write_report(grid, out=tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert table_row(text, "| random | 10% | 2 | 48.00 ± 0.00 | 48.00 | — (full ≤ none) |")
    assert "Full ≤ none: the first grid's full (50.00%) is not above its none (52.00%)" in text
    paired = text.split("## Paired differences against random", 1)[1].split("##", 1)[0]
    assert "Nothing to pair" in paired and "| strategy |" not in paired  # random is the only strategy
    with open(result.files["runs_csv"], newline="") as f:
        header = next(csv.reader(f))
    assert "total_seconds" in header and "training_seconds" not in header  # as results.csv names it


def test_bench_tables_keep_one_row_order_whatever_order_the_runs_come_in(tmp_path):
    from coreaug.bench import write_results
    grid, listed = tmp_path / "A", []
    for strategy, subset in [("random", 0.3), ("coreset", 0.1), ("none", None), ("random", 0.1), ("full", None)]:
        for seed in (1, 0):
            folder = write_run(grid, strategy, seed, [0.3, 0.5], subset=subset)
            summary = json.loads((folder / "summary.json").read_text())
            (folder / "summary.json").write_text(json.dumps(dict(summary, eval_seconds=0.0, n_trained=1,
                                                                 n_augmented=1)))
            listed.append(SimpleNamespace(name=folder.name, strategy=strategy, subset=subset, seed=seed,
                                          folder=str(folder)))
    texts = []
    for k, runs in enumerate([listed, listed[::-1]]):
        out = tmp_path / f"bench{k}"
        out.mkdir()
        write_results(runs, str(out), 0.5)
        texts.append(((out / "results.md").read_text(), (out / "results.csv").read_text()))
    assert texts[0] == texts[1]
    md_rows = [line.split("|")[1:3] for line in texts[0][0].splitlines() if line.startswith("| ") and "---" not in line]
    assert [(s.strip(), f.strip()) for s, f in md_rows[1:]] == [
        ("full", "—"), ("none", "—"), ("random", "0.1"), ("coreset", "0.1"), ("random", "0.3")]
    names = [row["name"] for row in csv.DictReader(texts[0][1].splitlines())]
    assert names[:4] == ["full-seed0", "full-seed1", "none-seed0", "none-seed1"]
