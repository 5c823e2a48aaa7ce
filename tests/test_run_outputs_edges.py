"""Edges of a run's outputs: TensorBoard scalars of values metrics.jsonl holds per class, and of
a run that gains --tensorboard on --resume."""
import json

import pytest

import coreaug
from coreaug.training.run_files import RunFolder

from test_run_logs import TINY, read_scalars


def history_of(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_has_the_selection_objective_as_its_sum_over_classes(tmp_path):
    """docs/training.md named selection/objective, but the per-class list was dropped."""
    run = tmp_path / "run"
    coreaug.train(coreaug.TrainConfig(**TINY, epochs=2, strategy="coreset", subset=0.5, select_every=1,
                                      out=str(run), tensorboard=True))
    selected = [m for m in history_of(run) if m.get("selection_objective")]
    assert selected, "no selection in the run"
    assert read_scalars(run / "tensorboard")["selection/objective"] == [
        (m["epoch"] + 1, pytest.approx(sum(m["selection_objective"]), rel=1e-6)) for m in selected]


def test_a_resume_that_adds_tensorboard_writes_every_checkpointed_epoch(tmp_path, monkeypatch):
    """Only the last checkpointed epoch was written: steps [2, 3] of three."""
    run = tmp_path / "run"
    config = dict(TINY, epochs=3, out=str(run))
    real_save, saved = RunFolder.save_epoch, []

    def stopped_after_two(self, checkpoint, history):
        real_save(self, checkpoint, history)
        saved.append(len(history))
        if len(saved) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(RunFolder, "save_epoch", stopped_after_two)
    with pytest.raises(KeyboardInterrupt):
        coreaug.train(coreaug.TrainConfig(**config))
    monkeypatch.setattr(RunFolder, "save_epoch", real_save)
    coreaug.train(coreaug.TrainConfig(**config, resume=True, tensorboard=True))
    scalars = read_scalars(run / "tensorboard")
    assert scalars["loss/train"] == [(m["epoch"] + 1, pytest.approx(m["train_loss"], rel=1e-6))
                                     for m in history_of(run)]
    assert [step for step, _ in scalars["loss/train"]] == [1, 2, 3]


def test_results_md_and_the_report_name_a_runs_seconds_alike(tmp_path):
    """results.md's "train seconds" held selection, report.md's "s / epoch, training" did not."""
    from coreaug.bench import write_report
    from coreaug.bench.benchmark import _ListedRun, write_results

    from test_report import write_run
    runs = []
    for strategy in ("none", "full"):
        for seed in range(2):
            folder = write_run(tmp_path / "G", strategy, seed, [0.3, 0.4 + seed / 100])
            summary = json.loads((folder / "summary.json").read_text())
            summary.update(eval_seconds=0.1, n_trained=64, n_augmented=0)  # as bench's runs hold them
            (folder / "summary.json").write_text(json.dumps(summary))
            runs.append(_ListedRun(folder.name, strategy, None, seed, str(folder)))
    results = open(write_results(runs, str(tmp_path / "G")).files["md"]).read()
    report = open(write_report(tmp_path / "G", out=tmp_path / "report").files["md"]).read()
    for text in (results, report):
        assert "| seconds, training + selection" in text and "train seconds" not in text
    assert "| s / epoch, training without selection |" in report
