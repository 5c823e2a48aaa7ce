"""Image-folder input benchmark: coreaug's decoded cache against ImageFolder + DataLoader.

    python experiments/bench_data.py [--count 20000] [--small-count 5000] [--sizes 64,224]
        [--workers 2] [--repeats 3] [--work-dir /tmp/coreaug-bench-data] [--max-load 0.8]
        [--out experiments/results/data.md]

Generates (once, under --work-dir, never committed) a folder per image size S of --count
training JPEGs in --classes classes (smooth random colour fields, a gradient and noise,
1.25S x S, quality 90) plus one validation image per class, and a --small-count folder of
hard links to part of it. Then, per size, each a median of --repeats runs:

- coreaug build: ``load_image_folder(root, S, on_disk=True, workers=W)`` from an empty cache
  (listing, hashing, decoding in W DataLoader workers, writing, channel statistics);
  images/s counts every decoded image (training and validation).
- coreaug epoch read: the built cache's ``train_images.batches`` over a random permutation
  in batches of 256, every training row once, as the trainer reads an epoch.
- reference epoch: torchvision ``ImageFolder(root/train, Compose([Resize(S), CenterCrop(S),
  PILToTensor()]))`` in ``DataLoader(batch_size=256, shuffle=True, num_workers=W)``; where
  torchvision cannot be imported, the same work written with Pillow (see ``PillowImageFolder``).
  The table says which ran.

Every run is a process forked from this lean driver (torch imported, no data held); the
driver samples the resident set of that process and its DataLoader workers every 20 ms
(/proc/<pid>/status VmRSS, summed over the tree), so peak RSS is per run. Before each run
the driver waits (up to --load-timeout seconds) for the 1-minute load average to fall below
--max-load and records it. The JPEG folder is read once before timing, so the reference and
the build both find it in the OS page cache; the decoded cache is read just after it was
written, so it is warm too.

Criteria, fixed before measuring: "at least as fast" compares time to train E epochs'
inputs (build + E reads against E reference epochs) at E = 1 and 10; "flat" means the peak
RSS at --count is within 10% of the peak at --small-count.
"""
import argparse
import datetime
import json
import multiprocessing
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import coreaug  # first: it sets OMP_WAIT_POLICY before torch loads OpenMP
import torch
from PIL import Image

from coreaug.data.image_cache import DiskImages
from coreaug.data.image_folder import load_image_folder

BATCH = 256
FLAT = 1.10  # peak RSS at 4N within 10% of the peak at N
FORK = multiprocessing.get_context("fork")
MIB = 2 ** 20


# ---- the generated folder -------------------------------------------------------------------

def _write_jpeg(task):
    path, size, label, seed = task
    rng = np.random.default_rng(seed)
    height, width = size, round(1.25 * size)
    cells = rng.integers(0, 256, (int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(cells).resize((width, height), Image.BICUBIC), dtype=np.float32)
    hue = np.array([np.sin(label), np.sin(label + 2.1), np.sin(label + 4.2)], dtype=np.float32) * 60 + 128
    ramp = np.linspace(-30, 30, width, dtype=np.float32)[None, :, None] * rng.choice([-1.0, 1.0])
    pixels = 0.6 * field + 0.4 * hue + ramp + rng.normal(0, 6, (height, width, 3)).astype(np.float32)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)


def make_folder(root: Path, count: int, size: int, classes: int, seed: int = 0):
    """``root/train/cNNN/*.jpg`` (``count`` images) and ``root/val/cNNN/*.jpg`` (one per class),
    written unless a folder with the same parameters is already there."""
    spec = {"count": count, "size": size, "classes": classes, "seed": seed, "version": 1}
    marker = root / "bench-data.json"
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return
    shutil.rmtree(root, ignore_errors=True)
    tasks = []
    for split, per_class, offset in (("train", count // classes, 0), ("val", 1, 10 ** 7)):
        for label in range(classes):
            folder = root / split / f"c{label:03d}"
            folder.mkdir(parents=True)
            tasks += [(str(folder / f"{i:06d}.jpg"), size, label, seed * 10 ** 8 + offset + label * 10 ** 5 + i)
                      for i in range(per_class)]
    with FORK.Pool(os.cpu_count()) as pool:
        pool.map(_write_jpeg, tasks, chunksize=64)
    marker.write_text(json.dumps(spec))


def link_subset(source: Path, root: Path, per_class: int):
    """``root``: hard links to the first ``per_class`` training images of each class of
    ``source`` and to all of its validation images (same bytes, no extra disk)."""
    spec = {"source": str(source), "per_class": per_class, "of": json.loads((source / "bench-data.json").read_text())}
    marker = root / "bench-data.json"
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return
    shutil.rmtree(root, ignore_errors=True)
    for split, keep in (("train", per_class), ("val", None)):
        for folder in sorted((source / split).iterdir()):
            (root / split / folder.name).mkdir(parents=True)
            for path in sorted(folder.iterdir())[:keep]:
                os.link(path, root / split / folder.name / path.name)
    marker.write_text(json.dumps(spec))


def warm(root: Path) -> int:
    """Read every file under ``root`` once (into the OS page cache); the bytes read."""
    total = 0
    for parent, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(parent, name), "rb") as f:
                total += len(f.read())
    return total


# ---- the pipelines (each runs in a forked process) ------------------------------------------

def coreaug_build(root, size, cache_dir, workers):
    """Seconds to build the decoded cache of ``root`` from nothing, and the images decoded."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    start = time.perf_counter()
    data = load_image_folder(root, image_size=size, on_disk=True, cache_dir=cache_dir, workers=workers,
                             progress=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images": len(data.train_images) + len(data.test_images)}


def coreaug_read(root, size, cache_dir, workers, seed):
    """Seconds to open the built cache, and to read every training row once in random batches."""
    start = time.perf_counter()
    data = load_image_folder(root, image_size=size, on_disk=True, cache_dir=cache_dir, workers=workers,
                             progress=False)
    opened = time.perf_counter() - start
    images = data.train_images
    if not isinstance(images, DiskImages):
        raise RuntimeError(f"expected DiskImages, got {type(images).__name__}")
    order = np.random.default_rng(seed).permutation(len(images))
    rows = [order[s:s + BATCH] for s in range(0, len(order), BATCH)]
    start, seen = time.perf_counter(), 0
    for batch in images.batches(rows):
        seen += len(batch)
    return {"seconds": time.perf_counter() - start, "open_seconds": opened, "images": seen}


class PillowImageFolder(torch.utils.data.Dataset):
    """torchvision's ImageFolder with Compose([Resize(S), CenterCrop(S), PILToTensor()]), in
    Pillow: the same sorted (path, class) list, pil_loader (open, convert("RGB")), the shorter
    side resized to S bilinear with the longer side truncated, a centre crop with rounded
    offsets, and a (3, S, S) uint8 tensor (a permuted view, stacked by default_collate)."""

    EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

    def __init__(self, folder, size):
        self.size = size
        self.classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
        self.samples = [(os.path.join(parent, name), label)
                        for label, cls in enumerate(self.classes)
                        for parent, _, names in sorted(os.walk(os.path.join(folder, cls)))
                        for name in sorted(names) if name.lower().endswith(self.EXTENSIONS)]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        with open(path, "rb") as f:
            image = Image.open(f).convert("RGB")
        width, height = image.size
        short, long = min(width, height), max(width, height)
        scaled = (self.size, int(self.size * long / short))
        image = image.resize(scaled if width <= height else scaled[::-1], Image.BILINEAR)
        top, left = int(round((image.height - self.size) / 2.0)), int(round((image.width - self.size) / 2.0))
        image = image.crop((left, top, left + self.size, top + self.size))
        return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1), label


def reference_dataset(folder, size):
    """(dataset, name): torchvision's ImageFolder if torchvision imports, else PillowImageFolder."""
    try:
        import torchvision
        from torchvision import datasets, transforms
    except Exception as exc:  # noqa: BLE001 - any import failure (missing, or a CUDA-linked wheel)
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
        name = f"Pillow equivalent of torchvision's ImageFolder (torchvision: {reason})"
        return PillowImageFolder(folder, size), name
    transform = transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.PILToTensor()])
    return datasets.ImageFolder(folder, transform=transform), f"torchvision {torchvision.__version__} ImageFolder"


def reference_epoch(root, size, workers, seed):
    """Seconds for one shuffled DataLoader epoch over ``root/train`` (workers started inside it)."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    dataset, name = reference_dataset(os.path.join(root, "train"), size)
    opened = time.perf_counter() - start
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers)
    start, seen = time.perf_counter(), 0
    for images, _ in loader:
        seen += len(images)
    return {"seconds": time.perf_counter() - start, "open_seconds": opened, "images": seen, "reference": name}


def idle(**_):
    return {"seconds": 0.0, "images": 0}


PIPELINES = {"build": coreaug_build, "read": coreaug_read, "reference": reference_epoch, "idle": idle}


# ---- running one measurement ----------------------------------------------------------------

def _child(name, kwargs, conn):
    import resource

    try:
        result = PIPELINES[name](**kwargs)
        result["ru_maxrss_self_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["ru_maxrss_children_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    except BaseException:  # noqa: BLE001 - handed to the driver, which raises it
        result = {"error": traceback.format_exc()}
    conn.send(result)
    conn.recv()  # the driver's last sample of this process is taken
    conn.close()


def _descendants(pid):
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += parents.get(tree[-1], [])
    return tree


def _status_kib(pid, keys=("VmRSS", "RssFile", "RssAnon")):
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return {k: 0 for k in keys}
    return {k: int(fields.get(k, "0 kB").split()[0]) for k in keys}


def wait_until_quiet(max_load, timeout):
    """Wait until the 1-minute load average is below ``max_load`` or ``timeout`` seconds pass;
    the load average then."""
    start = time.monotonic()
    while os.getloadavg()[0] >= max_load and time.monotonic() - start < timeout:
        time.sleep(5)
    return os.getloadavg()[0]


def measure(name, kwargs, max_load, load_timeout):
    """Run pipeline ``name`` in a forked process; its result with the 1-minute load before it
    and the sampled peak RSS of the process and its workers (MiB)."""
    load = wait_until_quiet(max_load, load_timeout)
    receive, send = FORK.Pipe()
    proc = FORK.Process(target=_child, args=(name, kwargs, send))
    proc.start()
    peak_tree = peak_main = peak_main_file = peak_worker_anon = 0
    pids, next_scan, done = [proc.pid], 0.0, False
    while not done:
        done = receive.poll(0.02)  # the child waits for our answer after sending: one last sample
        if not done and not proc.is_alive() and not receive.poll(0.1):
            raise RuntimeError(f"{name} run died with exit code {proc.exitcode}")
        if time.monotonic() >= next_scan or done:
            pids, next_scan = _descendants(proc.pid), time.monotonic() + 0.25
        sizes = [_status_kib(pid) for pid in pids]
        peak_tree = max(peak_tree, sum(s["VmRSS"] for s in sizes))
        peak_main, peak_main_file = max(peak_main, sizes[0]["VmRSS"]), max(peak_main_file, sizes[0]["RssFile"])
        peak_worker_anon = max([peak_worker_anon] + [s["RssAnon"] for s in sizes[1:]])
    result = receive.recv()
    receive.send(None)
    proc.join()
    if "error" in result:
        raise RuntimeError(f"{name} run failed:\n{result['error']}")
    result.update(load=load, peak_rss_mib=peak_tree / 1024, peak_main_rss_mib=peak_main / 1024,
                  peak_main_rss_file_mib=peak_main_file / 1024, peak_worker_rss_anon_mib=peak_worker_anon / 1024)
    return result


# ---- the benchmark --------------------------------------------------------------------------

def bench_size(args, size, work):
    """Every measurement at one image size: {"big": {pipeline: [runs]}, "small": {...}}."""
    big, small = work / f"folder-{size}px-{args.count}", work / f"folder-{size}px-{args.small_count}"
    started = time.perf_counter()
    make_folder(big, args.count, size, args.classes)
    link_subset(big, small, args.small_count // args.classes)
    generate_seconds = time.perf_counter() - started
    folder_bytes = warm(big)
    runs = {}
    for label, root, repeats in (("big", big, args.repeats), ("small", small, 1)):
        runs[label] = {"build": [], "read": [], "reference": []}
        for repeat in range(repeats):
            cache = str(work / f"cache-{size}px-{label}-{repeat}")
            common = dict(root=str(root), size=size)
            for name, kwargs in (("build", dict(cache_dir=cache, workers=args.workers)),
                                 ("read", dict(cache_dir=cache, workers=args.workers, seed=repeat)),
                                 ("reference", dict(workers=args.workers, seed=repeat))):
                run = measure(name, {**common, **kwargs}, args.max_load, args.load_timeout)
                runs[label][name].append(run)
                print(f"{size}px {label} {name} #{repeat}: {run['seconds']:.2f} s, {run['images']} images, "
                      f"peak RSS {run['peak_rss_mib']:.0f} MiB, load {run['load']:.2f}", flush=True)
            shutil.rmtree(cache, ignore_errors=True)
    return {"runs": runs, "generate_seconds": generate_seconds, "folder_mib": folder_bytes / MIB}


def median_seconds(runs):
    return statistics.median(r["seconds"] for r in runs)


def summarize(size, measured, count):
    """The numbers of one size's table rows."""
    runs = measured["runs"]["big"]
    build, read, ref = (median_seconds(runs[k]) for k in ("build", "read", "reference"))
    out = {"size": size, "build_s": build, "read_s": read, "reference_s": ref,
           "build_rate": runs["build"][0]["images"] / build, "read_rate": count / read, "reference_rate": count / ref,
           "open_s": statistics.median(r["open_seconds"] for r in runs["read"]),
           "reference_open_s": statistics.median(r["open_seconds"] for r in runs["reference"]),
           "reference": runs["reference"][0]["reference"],
           "loads": [r["load"] for label in ("big", "small") for rs in measured["runs"][label].values() for r in rs]}
    for epochs in (1, 10):
        out[f"coreaug_{epochs}"] = build + epochs * read
        out[f"reference_{epochs}"] = epochs * ref
    out["break_even"] = next((e for e in range(1, 10001) if build + e * read <= e * ref), None)
    for name in ("build", "read", "reference"):
        out[f"rss_{name}"] = (measured["runs"]["small"][name][0]["peak_rss_mib"],
                              max(r["peak_rss_mib"] for r in runs[name]))
        for part in ("main_rss_file", "worker_rss_anon"):
            out[f"{part}_{name}"] = (measured["runs"]["small"][name][0][f"peak_{part}_mib"],
                                     max(r[f"peak_{part}_mib"] for r in runs[name]))
    return out


def code_version():
    """The commit the coreaug package was imported from, and whether its files differed from it."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(coreaug.__file__)))

    def git(*command):
        return subprocess.run(["git", "-C", package, *command], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return f"coreaug from {package} (not a git checkout)"
    dirty = git("status", "--porcelain", "--", "coreaug")
    return f"coreaug at commit {commit}{' with uncommitted changes under coreaug/' if dirty else ''}"


def machine():
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.machine())
    memory = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return (f"{model}, {os.cpu_count()} cores, {memory / 2 ** 20:.0f} GiB memory, "
            f"{platform.system()} {platform.release()}")


def render(args, rows, measured, baseline, started):
    yes = lambda ok: "yes" if ok else "no"  # noqa: E731
    n, n4 = f"{args.small_count:,}", f"{args.count:,}"
    loads = [x for r in rows for x in r["loads"]]
    lines = [
        "# Image-folder input: coreaug's decoded cache against ImageFolder + DataLoader", "",
        f"Command: `{' '.join(['python experiments/bench_data.py'] + [shlex.quote(a) for a in sys.argv[1:]])}`  ",
        f"Date: {started:%Y-%m-%d %H:%M} UTC; {time.time() - started.timestamp():.0f} s in all.  ",
        f"Code: {args.code}. Machine: {machine()}; torch {torch.__version__}, Pillow {Image.__version__}, "
        f"numpy {np.__version__}.  ",
        f"Load: 1-minute load average before each run {min(loads):.2f} to {max(loads):.2f} (each run waits up to "
        f"{args.load_timeout:.0f} s for it to fall below {args.max_load}; the machine is shared, and our own "
        "previous run raises it).  ",
        f"Reference: {rows[0]['reference']}.  ",
        f"Workers: {args.workers} DataLoader worker processes for coreaug's build and for the reference epoch; "
        f"coreaug's epoch read has none (one read-ahead thread). Batches of {BATCH}.  ",
        f"Folders: {n4} training JPEGs in {args.classes} classes (+{args.classes} validation images, which coreaug's "
        f"build decodes too), 1.25S x S, quality 90, generated under `{args.work_dir}`; the {n}-image folder is "
        f"hard links to part of it. Both folders were read once before timing (warm in the page cache); the "
        f"decoded cache is read right after it is written (warm).", "",
        f"## Speed ({n4} training images; medians of {args.repeats} runs, each a fresh forked process)", "",
        "| size | coreaug build img/s | coreaug epoch read img/s | reference epoch img/s | 1 epoch: coreaug s "
        "(build + read) | 1 epoch: reference s | 10 epochs: coreaug s | 10 epochs: reference s | coreaug at least "
        "as fast: 1 / 10 epochs | break-even epochs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} px | {r['build_rate']:,.0f} | {r['read_rate']:,.0f} | {r['reference_rate']:,.0f} | "
            f"{r['coreaug_1']:.1f} ({r['build_s']:.1f} + {r['read_s']:.2f}) | {r['reference_1']:.1f} | "
            f"{r['coreaug_10']:.1f} | {r['reference_10']:.1f} | "
            f"{yes(r['coreaug_1'] <= r['reference_1'])} / {yes(r['coreaug_10'] <= r['reference_10'])} | "
            f"{r['break_even'] if r['break_even'] else '> 10000'} |")
    lines += ["", "Opening a built cache (listing and hashing the folder, reading the metadata; in none of the "
              "times above): " + ", ".join(f"{r['size']} px {r['open_s']:.2f} s (the reference's folder scan "
              f"{r['reference_open_s']:.2f} s)" for r in rows) + ".", "",
              f"## Peak RSS (MiB, the process plus its DataLoader workers, sampled every 20 ms): {n} vs {n4} "
              "images", "",
              f"| size | pipeline | {n} | {n4} | ratio | flat (within {FLAT - 1:.0%}) | main process RssFile "
              f"{n} / {n4} | largest worker RssAnon {n} / {n4} |", "|---|---|---|---|---|---|---|---|"]
    names = {"build": "coreaug build", "read": "coreaug epoch read", "reference": "reference epoch"}
    for r in rows:
        for key, label in names.items():
            small, big = r[f"rss_{key}"]
            file_small, file_big = r[f"main_rss_file_{key}"]
            anon_small, anon_big = r[f"worker_rss_anon_{key}"]
            workers = f"{anon_small:,.0f} / {anon_big:,.0f}" if anon_big else "no workers"
            lines.append(f"| {r['size']} px | {label} | {small:,.0f} | {big:,.0f} | {big / small:.2f} | "
                         f"{yes(big <= FLAT * small)} | {file_small:,.0f} / {file_big:,.0f} | {workers} |")
    lines += ["", f"At {n4} images the peak is the largest of the {args.repeats} runs; at {n} one run. The sum "
              "counts pages a worker shares with its parent once per process: a forked process that does "
              f"nothing peaks at {baseline:.0f} MiB, so the reference and the build (parent + {args.workers} "
              f"workers) start near {(1 + args.workers) * baseline:.0f} MiB and the epoch read (one process, a "
              "read-ahead thread) near "
              f"{baseline:.0f}. RssFile is the main process's file-backed resident pages: its libraries and, "
              "any cache pages mapped into it (DiskImages reads with pread, so none). RssAnon is a worker's "
              "private memory (its decode buffers and batches).",
              "", "## Verdict", ""]
    lines += verdict(rows, n, n4)
    lines += ["", "## Every run (seconds)", "", "| size | folder | build | epoch read | reference epoch |",
              "|---|---|---|---|---|"]
    for r in rows:
        for label, count in (("big", n4), ("small", n)):
            runs = measured[r["size"]]["runs"][label]
            cell = lambda k: ", ".join(f"{x['seconds']:.2f}" for x in runs[k])  # noqa: E731
            lines.append(f"| {r['size']} px | {count} | {cell('build')} | {cell('read')} | {cell('reference')} |")
    return "\n".join(lines) + "\n"


def verdict(rows, n, n4):
    lines = []
    for r in rows:
        faster = [e for e in (1, 10) if r[f"coreaug_{e}"] <= r[f"reference_{e}"]]
        flat = [k for k in ("build", "read", "reference") if r[f"rss_{k}"][1] <= FLAT * r[f"rss_{k}"][0]]
        lines.append(
            f"- {r['size']} px: an epoch read from the cache is {r['read_rate'] / r['reference_rate']:.1f}x the "
            f"reference epoch's rate; the one-off build decodes at {r['build_rate'] / r['reference_rate']:.2f}x "
            f"the reference's rate. Build plus E epochs is at least as fast as E reference epochs at E = 1: "
            f"{'yes' if 1 in faster else 'no'}; E = 10: {'yes' if 10 in faster else 'no'} (break-even at "
            f"E = {r['break_even']}). Peak RSS flat from {n} to {n4} images: coreaug build "
            f"{'yes' if 'build' in flat else 'no'}, coreaug epoch read {'yes' if 'read' in flat else 'no'}, "
            f"reference {'yes' if 'reference' in flat else 'no'}.")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20000, help="training images in the large folder (4N)")
    parser.add_argument("--small-count", type=int, default=5000, help="training images in the small folder (N)")
    parser.add_argument("--classes", type=int, default=100,
                        help="classes of the generated folders; must divide --count and --small-count "
                             "(default: %(default)s)")
    parser.add_argument("--sizes", default="64,224", help="image sizes S, comma-separated")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers, both pipelines")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per size and pipeline at --count, median kept (one at --small-count; "
                             "default: %(default)s)")
    parser.add_argument("--work-dir", default="/tmp/coreaug-bench-data", help="generated folders and caches")
    parser.add_argument("--max-load", type=float, default=0.8,
                        help="before each run, wait for the 1-minute load average to fall below this "
                             "(default: %(default)s)")
    parser.add_argument("--load-timeout", type=float, default=60.0, help="longest wait for --max-load, seconds")
    parser.add_argument("--out", default="experiments/results/data.md",
                        help="the markdown report's path (default: %(default)s)")
    parser.add_argument("--json", default=None, help="also write every measurement here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.count % args.classes or args.small_count % args.classes or not 0 < args.small_count <= args.count:
        parser.error(f"--count ({args.count}) and --small-count ({args.small_count}) must be multiples of --classes "
                     f"({args.classes}) with 0 < small-count <= count")
    started = datetime.datetime.now(datetime.timezone.utc)
    args.code = code_version()  # the code the forked runs use: imported now
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    baseline = measure("idle", {}, args.max_load, args.load_timeout)["peak_rss_mib"]
    measured = {size: bench_size(args, size, work) for size in sizes}
    rows = [summarize(size, measured[size], args.count) for size in sizes]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(render(args, rows, measured, baseline, started))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "measured": measured, "idle_rss_mib": baseline}, indent=1))
    print(Path(args.out).read_text())


if __name__ == "__main__":
    main()
