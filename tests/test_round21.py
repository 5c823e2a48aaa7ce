"""Review round 21: installing, two processes on the same files, a user's first half hour, the
method in one's own distributed loop."""
import os
import subprocess
import sys
import textwrap


def test_sigterm_while_bench_writes_its_tables_says_so_and_leaves_no_staged_file(tmp_path):
    """The tables were written outside the SIGTERM handler (no stop line) and results.csv through a
    `.results.<pid>.csv` that a stop left in the grid for good; Ctrl-C there said runs were unfinished."""
    script = textwrap.dedent(f"""
        import os, signal, time
        import coreaug.__main__  # finds coreaug.cli, in a checkout too
        import coreaug.bench.tables as tables
        from coreaug.cli.bench import bench

        real = tables._csv_value
        def slow_value(value):  # SIGTERM while results.csv is being written
            if not os.environ.get("STOPPED"):
                os.environ["STOPPED"] = "1"
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)
            return real(value)
        tables._csv_value = slow_value
        bench.main(["--dataset", "synthetic", "--train-limit", "32", "--test-limit", "16", "--epochs", "1",
                    "--subsets", "0.5", "--strategies", "random", "--references", "none", "--seeds", "1",
                    "--jobs", "1", "--out", {str(tmp_path / "g")!r}])
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 143, done.stderr
    assert done.stderr.strip().splitlines()[-1] == ("terminated (SIGTERM) while writing the grid's tables, after its "
                                                    "runs ended; run the same command to write them")
    assert [name for name in os.listdir(tmp_path / "g") if name.startswith(".")] == []
    assert not (tmp_path / "g" / "results.csv").exists()


def test_a_run_starting_while_another_command_looks_at_its_folder_waits_for_the_look(tmp_path, monkeypatch):
    """folder_in_use (bench, report, evaluate) takes the run's lock for a moment: a run starting then
    was refused as "in use by another coreaug run that is still going" (~5% against a polling look)."""
    import fcntl
    import threading

    from coreaug.training import run_files

    folder = tmp_path / "run"
    folder.mkdir()
    look = os.open(folder, os.O_RDONLY)
    fcntl.flock(look, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the look, as another process holds it
    threading.Timer(0.05, os.close, [look]).start()
    run = run_files.RunFolder(str(folder))
    try:
        run._take_lock()
    finally:
        run.release()
    monkeypatch.setattr(run_files.os.path, "isdir", lambda path: True)  # removed between the look and the lock
    assert run_files.folder_in_use(str(tmp_path / "gone")) is False


def test_a_second_run_into_the_same_new_out_is_refused_before_its_data_loads(tmp_path, monkeypatch):
    """The first run locked a new --out only once its data had loaded: the second decoded (or waited on
    the first's cache build, an hour on a large folder) before being refused. A run refused before its
    first file leaves no folder behind, nor the folders above it that it created."""
    import pytest

    import coreaug
    from coreaug.training import trainer

    out = tmp_path / "a" / "b" / "run"
    loads = []
    real_load = trainer.load_run_data

    def second_run_starts_while_the_first_loads(config, *args):
        loads.append(config.out)
        if len(loads) == 1:
            with pytest.raises(coreaug.UsageError, match="is in use by another coreaug run that is still going"):
                coreaug.train(coreaug.TrainConfig(dataset="synthetic", train_limit=32, test_limit=16, epochs=1,
                                                  quiet=True, out=str(out)))
            raise coreaug.UsageError("the first run's data is missing")
        return real_load(config, *args)

    monkeypatch.setattr(trainer, "load_run_data", second_run_starts_while_the_first_loads)
    with pytest.raises(coreaug.UsageError, match="the first run's data is missing"):
        coreaug.train(coreaug.TrainConfig(dataset="synthetic", train_limit=32, test_limit=16, epochs=1, quiet=True,
                                          out=str(out)))
    assert loads == [str(out)]  # the second was refused before loading anything
    assert os.listdir(tmp_path) == []  # a/b/run, made to hold the lock, went with the refusal


def test_seeds_whose_paired_differences_tie_give_no_interval_not_a_certain_difference(tmp_path):
    """Two or three seeds that each gained the same number of test images gave a 95% interval of zero
    width and "excludes zero: yes, above" (digits, 2 seeds: +2.79 ± 0.00, +2.79 to +2.79)."""
    import math

    from coreaug.bench import paired_differences, write_report
    from test_report import write_run

    tied = paired_differences({0: 95.0, 1: 93.0, 2: 94.0}, {0: 94.0, 1: 92.0, 2: 93.0})  # float rounding: std ~1e-16
    assert tied["n"] == 3 and tied["mean"] == 1.0 and math.isnan(tied["low"]) and math.isnan(tied["high"])
    spread = paired_differences({0: 95.0, 1: 93.5}, {0: 94.0, 1: 92.0})
    assert spread["low"] < 1.0 < 1.5 < spread["high"]
    grid = tmp_path / "g"
    for seed, (random, coreset) in enumerate([(0.8997, 0.9276), (0.9220, 0.9499)]):
        write_run(grid, "random", seed, [random], subset=0.1)
        write_run(grid, "maxloss", seed, [coreset], subset=0.1)
    write_report(grid, out=tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| maxloss | 10% | 2 | +2.79 ± 0.00 | — | — (no spread: add seeds) |" in text


def test_synthetic_cifar_is_named_as_registered():
    """`coreaug datasets synthetic-cifar` introduced itself as "synthetic"."""
    import coreaug

    assert coreaug.load_dataset("synthetic-cifar", progress=False).name == "synthetic-cifar"


def test_a_sampler_set_to_another_epoch_than_the_plans_is_refused():
    """A loop ported from DistributedSampler (set_epoch each epoch, start_epoch once) trained epoch 0's
    plan and selection every epoch without a word; under DDP, a rank that skipped start_epoch hung."""
    import pytest
    import torch

    import coreaug

    method = coreaug.CoresetAugmentation(torch.arange(50) % 5, strategy="random", fraction=0.3)
    sampler = method.sampler()
    method.start_epoch(0)
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    with pytest.raises(coreaug.UsageError, match=r"the plan is epoch 0's, but sampler.set_epoch\(1\) named another: "
                                                 r"call method.start_epoch\(1, model, data\) on every rank"):
        list(sampler)
    method.start_epoch(1)  # either order: set_epoch before start_epoch or after
    assert len(list(sampler)) == len(first) and list(sampler) != first
    method.start_epoch(2)  # set_epoch called once, not every epoch (or a wrapper's own count of passes)
    with pytest.raises(coreaug.UsageError, match=r"the plan is epoch 2's, but sampler.set_epoch\(1\) named an earlier "
                                                 r"one: call sampler.set_epoch\(epoch\) every epoch"):
        list(sampler)
    sampler.epoch = 2  # DistributedSampler's attribute, as code written for it sets it
    assert sampler.num_samples == len(sampler) == sampler.total_size == len(list(sampler))


def test_fixed_steps_for_several_ranks_needs_a_generator_seeded_alike():
    """generator=None with world_size 2: ranks seeding torch apart (seed + rank) laid out other batches,
    and their shards overlapped: 20 of 51 entries trained twice, 16 examples never (explore21-ddp #2)."""
    import pytest
    import torch

    import coreaug

    plan = coreaug.CoresetAugmentation(torch.arange(51) % 5, strategy="random", fraction=0.3).start_epoch(0)
    with pytest.raises(coreaug.UsageError, match="with world_size > 1, pass a generator seeded alike on every rank"):
        plan.fixed_steps(8, generator=None, world_size=2)
    assert len(plan.fixed_steps(8, generator=None)) % 8 == 0  # one process: the global RNG is fine
    assert len(plan.fixed_steps(8, generator=torch.Generator().manual_seed(0), world_size=2)) % 8 == 0


def test_a_rank_of_another_strategy_is_told_the_settings_differ_not_a_type_error(monkeypatch):
    """Rank 1 "full" beside a rank 0 "coreset" whose selection failed: TypeError: string indices must be
    integers (it read rank 0's failure as settings). The ranks now compare settings before any
    selection (round 22), so both are told the strategies differ."""
    import pytest
    import torch

    import coreaug
    from coreaug.training import method as method_module

    method = coreaug.CoresetAugmentation(torch.arange(50) % 5, strategy="full")  # this rank: 1 of 2
    other = coreaug.CoresetAugmentation(torch.arange(50) % 5, strategy="coreset")  # rank 0's

    def gathered(marks, mine):
        marks[:] = [(other._fingerprint(), False, False), mine]

    monkeypatch.setattr(method_module, "_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda *args: 2)
    monkeypatch.setattr(torch.distributed, "all_gather_object", gathered)
    with pytest.raises(coreaug.UsageError, match="settings differ between the ranks .*strategy: 'coreset' on rank 0, "
                                                 "'full' on rank 1"):
        method.start_epoch(0)


def test_a_refused_run_removes_only_the_folders_it_made_and_a_lock_is_of_the_folder_there_now(tmp_path, monkeypatch):
    """Two runs into one new --out at once: both counted the folder as made by them, and the refused one
    removed it while the other loaded its data; that one then trained in a new folder nobody locked, and a
    third run (--overwrite) was let in beside it (review30 #1)."""
    import coreaug
    from coreaug.training import run_files

    out = tmp_path / "runs" / "a"
    real_missing = run_files._missing_folders

    def raced(path):  # the other run makes the folder between this one's look and its mkdir
        missing = real_missing(path)
        if sys._getframe(1).f_code.co_name == "_make_and_lock":  # (not _check_can_make's look)
            os.makedirs(out)
        return missing

    monkeypatch.setattr(run_files, "_missing_folders", raced)
    first = run_files.RunFolder(str(out))
    first.check(coreaug.TrainConfig(dataset="synthetic").identity(), resume=False)
    first.abandon()  # refused: it made runs/ only
    assert out.is_dir() and [str(p) for p in tmp_path.iterdir()] == [str(tmp_path / "runs")]

    real_lock = run_files.lock_folder
    calls = []

    def replaced(fd, path, wait=True):  # the folder is removed and made again between the open and the lock
        calls.append(path)
        if len(calls) == 1:
            os.rmdir(path)
            os.mkdir(path)
        return real_lock(fd, path, wait)

    monkeypatch.setattr(run_files, "lock_folder", replaced)
    second = run_files.RunFolder(str(out))
    second._take_lock()
    try:
        assert len(calls) == 2 and os.fstat(second._lock).st_ino == os.stat(out).st_ino
    finally:
        second.release()


def test_a_run_of_the_coreset_loads_the_selection_libraries_before_its_first_selections_clock(tmp_path):
    """With the libraries loaded at the first selection, a run's epoch-0 facility-location seconds
    carried their load (0.19 s -> 0.70 s on digits; review30 #2), and then numba's first call (0.33 s;
    review31 #6): bench warmed them up, train did not."""
    code = textwrap.dedent(f"""
        import sys
        import coreaug
        from coreaug.training import trainer
        real, seen = trainer.select_examples, []
        def select_examples(*args, **kwargs):
            from coreaug.selection import greedy_kernel  # its compiled code too (numba's first call, ~0.3 s)
            seen.append(sorted(m for m in ("faiss", "numba", "scipy.sparse") if m in sys.modules)
                        + [bool(greedy_kernel._lazy_greedy.signatures)])
            return real(*args, **kwargs)
        trainer.select_examples = select_examples
        coreaug.train(coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=32, epochs=1, quiet=True,
                                          strategy="coreset", out={str(tmp_path / 'run')!r}))
        print(seen[0])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.stdout.strip().splitlines()[-1] == "['faiss', 'numba', 'scipy.sparse', True]", done.stderr


def test_the_plan_sampler_is_a_distributed_sampler_that_frameworks_leave_alone():
    """PyTorch Lightning (use_distributed_sampler, on by default) wraps any sampler that is not a
    DistributedSampler in one under DDP: the plan, already sharded, was sharded again, and each rank
    trained half of its share, without a word (explore21-ecosystem #1)."""
    import torch

    import coreaug

    method = coreaug.CoresetAugmentation(torch.arange(50) % 5, strategy="random", fraction=0.3, seed=3)
    sampler = method.sampler(num_replicas=2, rank=1)
    assert isinstance(sampler, torch.utils.data.distributed.DistributedSampler)
    method.start_epoch(0)
    share = method.plan.shard(1, 2)
    assert list(sampler) == (share.indices + 50 * share.augmented.long()).tolist() and len(sampler) == len(share)
    assert (sampler.num_replicas, sampler.rank, sampler.epoch, sampler.seed) == (2, 1, 0, 3)
    sampler.set_epoch(0)
    assert sampler.epoch == 0 and len(list(torch.utils.data.DataLoader(method.dataset(torch.utils.data.TensorDataset(
        torch.zeros(50, 1), torch.arange(50) % 5)), batch_size=4, sampler=sampler))) == -(-len(share) // 4)


def test_a_quiet_load_of_a_changed_folder_warns_of_the_caches_it_keeps(tmp_path):
    """Quiet (a sweep), the only notice of the earlier caches of an edited folder was hidden: each edit
    kept a whole decoded copy more (about 3 GB per edit at 20,000 images of 224 px; explore21-memory)."""
    import pytest

    from coreaug.data.image_folder import load_image_folder
    from test_data_image_folder import write_split

    write_split(tmp_path / "data", "train", per_class=2)
    write_split(tmp_path / "data", "val", per_class=1)
    load_image_folder(tmp_path / "data", image_size=8, progress=False, cache_dir=tmp_path / "cache")
    write_split(tmp_path / "data", "train", per_class=3)  # the folder changed: another cache
    with pytest.warns(UserWarning, match=r"1 other decoded cache of .* --clear-cache") as warned:
        load_image_folder(tmp_path / "data", image_size=8, progress=False, cache_dir=tmp_path / "cache")
    assert warned[0].filename == __file__  # the user's line, not coreaug's wrapper (review31 #3)


def test_under_torchrun_the_kept_caches_warning_of_a_rank_other_than_0_is_shown(tmp_path):
    """A command shows rank 0's warnings alone; whichever rank builds a changed folder's cache says
    what it keeps, so the note was lost when rank 1 built it (review31 #2)."""
    code = textwrap.dedent(f"""
        import sys, warnings
        import coreaug
        from coreaug.cli.main import main
        from coreaug.errors import CachesKept
        from coreaug.files import warn_at_caller

        def train(config, **kwargs):
            warn_at_caller("2 other decoded caches of /data", CachesKept)
            warnings.warn("rank 1's own warning")
            raise coreaug.UsageError("stopped here")
        coreaug.train = train
        sys.exit(main(["train", "--dataset", "synthetic", "--out", {str(tmp_path / 'run')!r}]))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "RANK": "1", "OMP_NUM_THREADS": "1"})
    assert "2 other decoded caches of /data" in done.stderr and "rank 1's own warning" not in done.stderr, done.stderr


def test_a_disk_whose_folder_numbers_change_still_lets_a_run_take_its_lock(tmp_path, monkeypatch):
    """The lock is checked to be of the folder at the path; where fstat and stat never agree (some
    network or FUSE disks), a run takes it after a few tries rather than trying for ever."""
    from coreaug.training import run_files

    monkeypatch.setattr(run_files, "_is_at", lambda fd, path: False)
    run = run_files.RunFolder(str(tmp_path))
    run._take_lock()
    try:
        assert run._lock is not None
    finally:
        run.release()


def test_a_run_refused_because_another_took_the_lock_first_removes_nothing(tmp_path, monkeypatch):
    """Two runs into one new --out at once: the one whose mkdir made the folder was not always the one
    that took its lock; refused, it removed the folder the other had locked (review31 #1)."""
    import pytest

    import coreaug
    from coreaug.training import run_files

    out = tmp_path / "runs" / "a"
    winner = run_files.RunFolder(str(out))
    real_make = run_files.make_folder

    def the_other_locks_first(path):
        real_make(path)
        winner._take_lock()

    monkeypatch.setattr(run_files, "make_folder", the_other_locks_first)
    loser = run_files.RunFolder(str(out))
    with pytest.raises(coreaug.UsageError, match="is in use by another coreaug run"):
        loser.check(coreaug.TrainConfig(dataset="synthetic").identity(), resume=False)
    loser.abandon()
    try:
        assert out.is_dir() and run_files._is_at(winner._lock, str(out))
    finally:
        winner.release()
