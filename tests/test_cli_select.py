"""`coreaug select`: round trip, summary, and one-line errors with nothing written."""
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import coreaug
from coreaug.cli.main import app
from coreaug.selection.rules import select_by_rule


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "f.npy", rng.normal(size=(200, 4)).astype(np.float32))
    np.save(tmp_path / "l.npy", np.arange(200) % 4)
    np.save(tmp_path / "loss.npy", rng.random(200))
    return tmp_path


def run(*args):
    return CliRunner().invoke(app, ["select", *map(str, args)])


def test_round_trip_matches_the_api(files):
    result = run("--features", files / "f.npy", "--labels", files / "l.npy", "--fraction", 0.3, "--out", files / "s.npz")
    assert result.exit_code == 0, result.output
    assert "60 of 200" in result.output and "objective" in result.output
    saved = np.load(files / "s.npz")
    api = coreaug.select_coreset(np.load(files / "f.npy"), np.load(files / "l.npy"), 0.3)
    assert saved["indices"].tolist() == api.indices.tolist()
    np.testing.assert_array_equal(saved["weights"], api.weights)


@pytest.mark.parametrize("extra", [["--strategy", "random", "--seed", "2"], ["--strategy", "maxloss", "--losses", "loss.npy"],
                                   ["--backend", "apricot", "--knn", "5", "--balance", "proportional"]])
def test_other_strategies_and_options(files, extra):
    extra = [str(files / e) if e.endswith(".npy") else e for e in extra]
    coreset = "--strategy" not in extra
    features = ["--features", files / "f.npy"] if coreset else []  # random and maxloss refuse features they don't read
    result = run(*features, "--labels", files / "l.npy", "--fraction", 0.1, "--out", files / "s.npz", *extra)
    assert result.exit_code == 0, result.output
    assert len(np.load(files / "s.npz")["indices"]) == 20
    assert ("objective: none (this rule optimises none)" in result.output) != coreset  # was "objective: nan"
    assert "nan" not in result.output


@pytest.mark.parametrize("args, message", [
    (["--fraction", "1.5"], "fraction must be in (0, 1]"),
    (["--fraction", "0.3", "--labels", "missing.npy"], "not a readable .npy"),
    (["--fraction", "0.3", "--strategy", "maxloss"], "--losses is required"),
    (["--fraction", "0.3", "--features", "l.npy"], "features must be 2-D"),
])
def test_errors_are_one_line_exit_2_and_write_nothing(files, args, message):
    base = {"--features": files / "f.npy", "--labels": files / "l.npy", "--out": files / "s.npz"}
    for i in range(0, len(args), 2):
        base[args[i]] = files / args[i + 1] if args[i + 1].endswith(".npy") else args[i + 1]
    flat = [str(v) for kv in base.items() for v in kv]
    proc = subprocess.run([sys.executable, "-m", "coreaug", "select", *flat], capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (files / "s.npz").exists()


def test_missing_output_folder_is_an_error(files):
    result = run("--features", files / "f.npy", "--labels", files / "l.npy", "--fraction", 0.3, "--out", files / "no" / "s.npz")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_select_takes_every_rule_and_asks_for_the_scores_it_reads(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "y.npy", np.repeat(np.arange(4), 25))
    np.save(tmp_path / "g.npy", rng.normal(size=(100, 4)).astype(np.float32))
    np.save(tmp_path / "l.npy", rng.random(100))
    base = ["select", "--labels", str(tmp_path / "y.npy"), "--fraction", "0.2", "--out", str(tmp_path / "s.npz")]
    ok = CliRunner().invoke(app, base + ["--strategy", "coreset-lowloss", "--features", str(tmp_path / "g.npy"),
                                         "--losses", str(tmp_path / "l.npy")])
    assert ok.exit_code == 0, ok.output
    assert len(np.load(tmp_path / "s.npz")["indices"]) == 20
    missing = CliRunner().invoke(app, base + ["--strategy", "infobatch"])
    assert missing.exit_code == 2 and "--losses is required with --strategy infobatch" in missing.output


def test_help_names_every_rule_that_needs_features_or_losses():
    """coreset-history and coreset-heldout need both, and the help named neither."""
    from coreaug.selection.rules import RULES

    text = " ".join(CliRunner().invoke(app, ["select", "--help"], terminal_width=1000).output.split())
    for flag, score in (("--features", "estimates"), ("--losses", "losses")):
        needing = [name for name, rule in RULES.items() if score in rule.needs]
        assert f"({', '.join(needing)})" in text.split(flag, 1)[1].split("--", 1)[0]
    assert "coreset-history" in needing


def test_a_negative_seed_is_one_line_exit_2(files):
    proc = subprocess.run([sys.executable, "-m", "coreaug", "select", "--strategy", "random", "--labels",
                           str(files / "l.npy"), "--fraction", "0.3", "--out", str(files / "s.npz"), "--seed", "-1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "--seed" in proc.stderr and not (files / "s.npz").exists()


def test_select_by_rule_refuses_a_negative_seed_naming_it(files):
    from coreaug.selection.rules import select_by_rule

    with pytest.raises(coreaug.UsageError, match="seed must be an integer >= 0, got -1"):
        select_by_rule("random", np.load(files / "l.npy"), 0.3, seed=-1)


@pytest.fixture
def tied(tmp_path):
    """61 examples in 9 classes at fraction 0.1: 6 picks, so the seed decides which classes get one."""
    np.save(tmp_path / "f.npy", np.random.default_rng(0).normal(size=(61, 4)).astype(np.float32))
    np.save(tmp_path / "l.npy", np.repeat(np.arange(10), 7)[:61])
    return tmp_path


def test_coreset_seed_orders_class_ties_as_training_does(tied):
    features, labels = np.load(tied / "f.npy"), np.load(tied / "l.npy")
    counts = {}
    for seed in (0, 5, 1 * 100_003 + 2):
        result = run("--features", tied / "f.npy", "--labels", tied / "l.npy", "--fraction", 0.1,
                     "--out", tied / "s.npz", "--seed", seed)
        assert result.exit_code == 0, result.output
        saved = np.load(tied / "s.npz")
        rule = select_by_rule("coreset", labels, 0.1, estimates=features, seed=seed)
        assert saved["indices"].tolist() == rule.indices.tolist()
        counts[seed] = saved["class_counts"].tolist()
    assert counts[0] != counts[5]  # was the same: --seed was dropped for coreset
    for train_seed, epoch, seed in [(0, 0, 0), (1, 2, 100_005)]:  # the CLI help's T * 100003 + E
        method = coreaug.CoresetAugmentation(labels, strategy="coreset", fraction=0.1, seed=train_seed)
        assert method.choose(epoch, estimates=features)[0].class_counts.tolist() == counts[seed]


def test_backend_apricot_is_refused_for_other_strategies(files):
    result = run("--features", files / "f.npy", "--labels", files / "l.npy", "--fraction", 0.1,
                 "--out", files / "s.npz", "--strategy", "crust", "--backend", "apricot")
    assert result.exit_code == 2
    assert "--backend apricot applies to --strategy coreset only" in result.output
    assert not (files / "s.npz").exists()


@pytest.mark.parametrize("name, make, message", [
    ("sel.npz", lambda p: np.savez(p, indices=np.arange(3), weights=np.ones(3)),
     "is an .npz archive (arrays: indices, weights), not a .npy array"),  # was "got dtype <U7" / "shape (2,)"
    ("text.npy", lambda p: p.write_text("hello"), "does not start with the .npy header"),  # was "pickled"
])
def test_a_file_that_is_not_npy_is_named_for_what_it_is(files, name, make, message):
    make(files / name)
    for flag in ("--labels", "--features"):
        paths = {"--features": files / "f.npy", "--labels": files / "l.npy", flag: files / name}
        result = run(*[str(v) for kv in paths.items() for v in kv], "--fraction", 0.1, "--out", files / "s.npz")
        assert result.exit_code == 2
        assert message in result.output and "pickled" not in result.output and "dtype" not in result.output


def test_summary_of_many_classes_stays_short(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.arange(1000), rng.integers(0, 990, 1000)])
    np.save(tmp_path / "l.npy", labels)
    result = run("--strategy", "random", "--labels", tmp_path / "l.npy", "--fraction", 0.3, "--out", tmp_path / "s.npz")
    assert result.exit_code == 0, result.output
    assert max(map(len, result.output.splitlines())) < 120
    counts = np.load(tmp_path / "s.npz")["class_counts"]
    assert (f"per class: 1000 classes, least {counts.min()}, median {np.median(counts):g}, most {counts.max()}, "
            f"{(counts == 0).sum()} with none") in result.output
