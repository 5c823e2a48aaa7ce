"""accuracy_vs_time.png: test accuracy against training seconds, one marker per run."""
import logging
import math

from coreaug.files import atomic_write

from .timing import training_seconds

COLOURS = {"full": "black", "none": "grey", "coreset": "tab:red", "random": "tab:blue", "maxloss": "tab:green",
           "coreset-lowloss": "tab:orange", "crust": "tab:purple", "infobatch": "tab:brown", "ccs": "tab:cyan"}


# What matplotlib logs, at its import, when it cannot make its config folder (a read-only home, as on compute
# nodes and under `docker run --user`): it makes a temporary one, removed at exit, and says so in two lines.
NO_CONFIG_FOLDER = ("mkdir -p failed for path", "%s is not a writable directory", "Matplotlib created a temporary")


def _figure_class():
    """matplotlib's Figure, imported without its lines about a config folder it could not make
    (`NO_CONFIG_FOLDER`: coreaug's own warnings are one line each); None without matplotlib."""
    log = logging.getLogger("matplotlib")

    def keep(record):
        return not str(record.msg).startswith(NO_CONFIG_FOLDER)
    log.addFilter(keep)
    try:
        import matplotlib.figure  # (raises where matplotlib is None in sys.modules, its figure module loaded)
    except ImportError:
        return None
    finally:
        log.removeFilter(keep)
    return matplotlib.figure.Figure


def plot_accuracy_vs_time(rows, target, path):
    """Draw each run's accuracy curve (thin line) and final point (marker), coloured by strategy.

    Takes the rows of tables.read_run (with their `history`), the target accuracy (a dashed
    line) and the PNG path. Returns the path, or None when matplotlib is not installed
    (it is the optional `plot` extra).
    """
    Figure = _figure_class()
    if Figure is None:
        return None
    figure = Figure(figsize=(7, 4.5))  # not pyplot: the caller's backend and open figures stay as they are
    axes = figure.subplots()
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
    _save(figure, path, dpi=120)
    return path


def plot_mean_curves(series, target, path, title):
    """Draw one mean accuracy curve per cell against training seconds (the report's plot).

    series: (panel, label, seconds, accuracies in %, line style) per cell; one panel per
    distinct `panel` (e.g. a subset), and a series whose panel is None (a reference) is drawn in
    every panel. target: the accuracy for time-to-target (a grey line), as a fraction; path:
    the PNG. Returns the path, or None when matplotlib (the `plot` extra) is not installed or
    there is nothing to draw.
    """
    Figure = _figure_class()
    if Figure is None:
        return None
    import matplotlib

    if not any(seconds for _, _, seconds, _, _ in series):
        return None
    panels = list(dict.fromkeys(panel for panel, *_ in series if panel is not None)) or [None]
    columns = min(len(panels), 3)
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(5.2 * columns, 3.8 * rows))  # not pyplot: the caller's backend stays as it is
    grid = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    colours = matplotlib.colormaps["tab20"].colors  # 20 distinct colours: the default cycle repeats after 10
    colours = colours[::2] + colours[1::2]
    for axes, panel in zip(grid.flat, panels):
        shown = [s for s in series if s[0] in (None, panel)]
        for number, (_, label, seconds, accuracies, style) in enumerate(shown):
            axes.plot(seconds, accuracies, style, marker=".", markersize=2, linewidth=1, label=label,
                      color=colours[number % len(colours)])
        if not math.isnan(target):
            axes.axhline(100 * target, color="grey", linewidth=0.8)
        axes.set_title(panel or title, fontsize=9)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=6, ncol=1 + len(shown) // 14)
    for axes in list(grid.flat)[len(panels):]:
        axes.set_visible(False)
    for axes in grid[-1]:
        axes.set_xlabel("training seconds (selection included, evaluation excluded)", fontsize=8)
    for axes in grid[:, 0]:
        axes.set_ylabel("test accuracy % (mean over seeds)", fontsize=8)
    figure.suptitle(f"{title}: accuracy against training time"
                    + ("" if math.isnan(target) else f" (grey line: target {target:.2%})"), fontsize=10)
    figure.tight_layout()
    _save(figure, path, dpi=90, metadata={"Software": None})
    return path


def _save(figure, path, **options):
    """Write `figure` as the PNG `path` atomically (beside it, then renamed): a disk that cannot take it leaves
    no partial file and no earlier plot damaged, and is an OSError naming `path` (Pillow's names none)."""
    atomic_write(path, lambda f: figure.savefig(f, format="png", **options), mode="wb", through_links=False)
