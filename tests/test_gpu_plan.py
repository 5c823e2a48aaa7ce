"""experiments/gpu_plan.py: the epochs of the paper's recipe that fit in a GPU check's time left."""
import json

import pytest


@pytest.fixture(scope="module")
def gpu_plan(experiment):
    return experiment("gpu_plan")


def row(mode, epoch_s, compile_s=None, strategy="maxloss", augment="maxloss", **extra):
    return dict(row=f"{strategy} 0.1", hand=False, strategy=strategy, augment=augment, mode=mode,
                epoch_seconds=epoch_s, compile_seconds=compile_s, **extra)


def test_the_mode_that_fits_more_epochs_is_chosen_with_its_compile_time(gpu_plan):
    rows = [dict(row("eager", 1.0), hand=True, strategy="hand"), row("eager", 1.0), row("compiled", 0.2, 60.0)]
    # 50,000 images from a 10,000-image table: eager 5.75 s an epoch, compiled 1.15 s after 60 s of compiling.
    epochs, mode, epoch, compile_s, compile_mode, basis = gpu_plan.plan(rows, 300.0, 50000, 10000, 200)
    assert (mode, compile_s, compile_mode) == ("compiled", 60.0, "-") and epoch == pytest.approx(1.15)
    assert epochs == int((300 - 20 - 30 - 60) / 1.15) and basis == "the max-loss 10% row"
    assert gpu_plan.plan(rows, 300.0, 50000, 10000, 100)[0] == 100  # at most the recipe's epochs
    assert gpu_plan.plan(rows[:2], 300.0, 50000, 10000, 200)[:2] == (int(250 / 5.75), "eager")


def test_a_compiled_row_measured_only_in_the_fallback_mode_names_it(gpu_plan, tmp_path):
    rows = [row("eager", 1.0), row("compiled", 0.3, 40.0, fallback_mode="default")]
    assert gpu_plan.plan(rows, 400.0, 10000, 10000, 1000)[1:5:3] == ("compiled", "default")
    path = tmp_path / "speed.json"
    path.write_text(json.dumps({"rows": rows}))
    line = gpu_plan.main([str(path), "400", "10000", "10000", "1000"]).split()
    assert line[1] == "compiled" and line[5] == "default" and line[6] == "the_max-loss_10%_row"


def test_without_a_max_loss_row_the_slowest_row_times_one_and_a_half_is_the_estimate(gpu_plan):
    rows = [row("eager", 1.0, strategy="none", augment="weak"), row("eager", 2.0, strategy="random")]
    epochs, mode, epoch, *_, basis = gpu_plan.plan(rows, 300.0, 1000, 1000, 200)
    assert epoch == pytest.approx(2.0 * 1.5 * 1.15) and "slowest" in basis


def test_no_table_plans_nothing(gpu_plan, tmp_path):
    assert gpu_plan.plan([], 300.0, 1000, 1000, 200) is None
    assert gpu_plan.main([str(tmp_path / "missing.json"), "300", "1000", "1000", "200"]).split()[:2] == ["0", "none"]
