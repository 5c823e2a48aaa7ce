"""accuracy_vs_time.png: test accuracy against training seconds, one marker per run."""
import math

from .timing import training_seconds

COLOURS = {"full": "black", "none": "grey", "coreset": "tab:red", "random": "tab:blue", "maxloss": "tab:green",
           "coreset-lowloss": "tab:orange", "crust": "tab:purple", "infobatch": "tab:brown", "ccs": "tab:cyan"}


def plot_accuracy_vs_time(rows, target, path):
    """Draw each run's accuracy curve (thin line) and final point (marker), coloured by strategy.

    Takes the rows of tables.read_run (with their `history`), the target accuracy (a dashed
    line) and the PNG path. Returns the path, or None when matplotlib is not installed
    (it is the optional `plot` extra).
    """
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only: no display on servers and in tests
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(figsize=(7, 4.5))
    labelled = set()
    for row in rows:
        colour = COLOURS.get(row["strategy"], "tab:olive")
        evaluated = [m for m in row["history"] if m["test_accuracy"] is not None]  # --eval-every skips some
        seconds = [training_seconds(m) for m in evaluated]
        accuracy = [100 * m["test_accuracy"] for m in evaluated]
        axes.plot(seconds, accuracy, color=colour, alpha=0.25, linewidth=1)
        label = None if row["strategy"] in labelled else row["strategy"]
        labelled.add(row["strategy"])
        axes.scatter(row["total_seconds"], 100 * row["final_accuracy"], color=colour, s=36, label=label, zorder=3)
        if row["subset"] is not None:
            axes.annotate(f"{row['subset']:g}", (row["total_seconds"], 100 * row["final_accuracy"]),
                          textcoords="offset points", xytext=(4, 3), fontsize=7, color=colour)
    if not math.isnan(target):
        axes.axhline(100 * target, color="black", linestyle="--", linewidth=0.8, label=f"target {target:.1%}")
    axes.set_xlabel("training seconds (evaluation excluded)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("Test accuracy vs training time (dots: final epoch; labels: subset)", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
