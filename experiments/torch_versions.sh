#!/usr/bin/env bash
# The whole test suite under several torch releases, one fresh virtual environment each: which
# releases coreaug runs on (setup.cfg's floor is torch 2.3) and from which one `--compile` works.
#
#   experiments/torch_versions.sh [VERSION...]     default: 2.3.1 2.5.1 2.7.1 2.8.0 2.9.1 2.11.0 2.13.0
#
# Each version: a venv in $VENVS/v$VERSION (default /tmp/coreaug-torch-versions; several GB each:
# torch from PyPI, CUDA build included, used on the CPU), `pip install torch==$VERSION` (numpy<2
# for 2.3, built against numpy 1) and `pip install -e .[test]`, then `pytest -q` on tests/ with
# the suite's own settings (tests/conftest.py). A venv that exists is reused. Writes one row per
# version to $OUT (default experiments/results/torch_versions.md; the table is rewritten each
# run, the rows of versions not run this time kept: read back from $OUT, whatever machine wrote
# them, and the `## ` sections below the table kept as written), the failures' names under it, and the logs
# to $VENVS/suite-$VERSION.log; each row names the code it tested (git describe --dirty). Needs PyPI;
# runs the suites one after another (about 10-15 minutes each on 2 cores).
set -uo pipefail
cd "$(dirname "$0")/.."
VENVS="${VENVS:-/tmp/coreaug-torch-versions}"
OUT="${OUT:-experiments/results/torch_versions.md}"
PY="${PYTHON:-python3}"
versions=("$@")
[ ${#versions[@]} -eq 0 ] && versions=(2.3.1 2.5.1 2.7.1 2.8.0 2.9.1 2.11.0 2.13.0)
mkdir -p "$VENVS" "$(dirname "$OUT")"
rows="$VENVS/rows.tsv"
: > "$rows"
# The table's rows, read back (whatever machine ran them): the rows of versions run now replace theirs.
"$PY" - "$OUT" "$rows" <<'EOF' || exit 1
import re, sys
table, rows = sys.argv[1:]
try:
    text = open(table, encoding="utf-8").read()
except OSError:
    sys.exit()
have = set()
failures = {m[1]: ";".join(line[2:] for line in m[2].splitlines())
            for m in re.finditer(r"^Failed or errored under torch (\S+):\n\n((?:- .*\n)+)", text, re.M)}
with open(rows, "a", encoding="utf-8") as f:
    for m in re.finditer(r"^\| (\d[\d.]*) \| (\S+) \| (.*?) \| (\d+) \| (\S+) \|$", text, re.M):
        if m[1] not in have:
            f.write("\t".join([m[1], m[2], m[3], m[4], failures.get(m[1], "-"), m[5]]) + "\n")
EOF
notes=$(sed -n '/^## /,$p' "$OUT" 2> /dev/null)
ran=0
for version in "${versions[@]}"; do
    venv="$VENVS/v$version"
    log="$VENVS/suite-$version.log"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch, coreaug" 2>/dev/null; then
        numpy=()
        case "$version" in 2.3.*) numpy=("numpy<2") ;; esac
        "$PY" -m venv "$venv" &&
            "$venv/bin/pip" install -q "torch==$version" "${numpy[@]}" &&
            "$venv/bin/pip" install -q -e ".[test]" || { echo "torch $version: install failed" >&2; continue; }
    fi
    echo "torch $version: running the suite (log: $log)" >&2
    start=$(date +%s)
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -rfE tests > "$log" 2>&1
    minutes=$(( ($(date +%s) - start + 30) / 60 ))
    summary=$(grep -E "^(=+ )?[0-9]+ (passed|failed)" "$log" | tail -n 1 | sed 's/=//g; s/^ *//; s/ *$//')
    [ -n "$summary" ] || summary="no summary (the process died: $(tail -n 1 "$log" | cut -c1-80))"
    failures=$(grep -E "^(FAILED|ERROR) " "$log" | sed -E 's/^(FAILED|ERROR) //; s/ - .*//' | paste -sd ';' -)
    python=$("$venv/bin/python" -c "import platform; print(platform.python_version())")
    commit=$(git describe --always 2>/dev/null || echo unknown)
    # dirty: code changed, not the tables this script and others write
    git diff --quiet HEAD -- . ':(exclude)experiments/results' 2>/dev/null || commit="$commit-dirty"
    failures=${failures:--}  # a field, not an empty one (read with IFS=tab merges empty fields)
    grep -v "^$version	" "$rows" > "$rows.$$"; mv "$rows.$$" "$rows"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$version" "$python" "$summary" "$minutes" "$failures" "$commit" >> "$rows"
    ran=$((ran + 1))
done
if [ "$ran" -eq 0 ]; then
    echo "no version's suite ran; $OUT left as it was" >&2
    exit 1
fi
{
    echo "# The test suite under torch releases"
    echo
    echo "Command: \`experiments/torch_versions.sh $(sort -t. -k1,1n -k2,2n -k3,3n "$rows" | cut -f1 | paste -sd' ' -)\`  "
    echo "Machine: $(uname -m), $(nproc --all) cores, torch from PyPI (its CUDA build, run on the CPU); last run $(date -u +%Y-%m-%d)."
    echo
    echo "| torch | Python | result | minutes | code (git describe) |"
    echo "|---|---|---|---|---|"
    sort -t. -k1,1n -k2,2n -k3,3n "$rows" | while IFS=$'\t' read -r version python summary minutes failures commit; do
        echo "| $version | $python | $summary | $minutes | $commit |"
    done
    echo
    sort -t. -k1,1n -k2,2n -k3,3n "$rows" | while IFS=$'\t' read -r version python summary minutes failures commit; do
        [ "$failures" != "-" ] || continue
        echo "Failed or errored under torch $version:"
        echo
        tr ';' '\n' <<< "$failures" | sed 's/^/- /'
        echo
    done
    [ -z "$notes" ] || printf '%s\n' "$notes"
} > "$OUT"
echo "wrote $OUT" >&2
