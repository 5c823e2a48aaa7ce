"""experiments/bench_data.py end to end on a tiny generated folder: the table and its numbers."""
import json
import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "experiments", "bench_data.py")


def test_bench_data_writes_a_table_of_positive_rates_and_peaks_for_each_size(tmp_path):
    out, raw = tmp_path / "data.md", tmp_path / "data.json"
    proc = subprocess.run([sys.executable, SCRIPT, "--count", "48", "--small-count", "12", "--classes", "4",
                           "--sizes", "16,24", "--repeats", "1", "--max-load", "1000", "--work-dir", str(tmp_path / "w"),
                           "--out", str(out), "--json", str(raw)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    table = out.read_text()
    for size in (16, 24):
        assert f"| {size} px | coreaug build |" in table and f"| {size} px | reference epoch |" in table
    assert "Reference: " in table and "## Verdict" in table
    rows = json.loads(raw.read_text())["rows"]
    assert [r["size"] for r in rows] == [16, 24]
    for r in rows:
        assert min(r["build_rate"], r["read_rate"], r["reference_rate"]) > 0
        assert all(rss > 100 for key in ("rss_build", "rss_read", "rss_reference") for rss in r[key])  # MiB: torch alone
    measured = json.loads(raw.read_text())["measured"]
    assert measured["16"]["runs"]["big"]["read"][0]["images"] == 48  # every training row read once
    assert measured["16"]["runs"]["big"]["build"][0]["images"] == 48 + 4  # and the validation images decoded
