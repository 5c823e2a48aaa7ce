# Sourced by the large-image recipes: reads `--data-dir DIR` (required) and an optional first
# positional OUT folder; whatever else is given stays in EXTRA and goes to coreaug unchanged
# (later flags override the recipe's).
DATA_DIR="" OUT="" EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --data-dir) DATA_DIR="${2:?--data-dir needs a folder}"; shift 2 ;;
        --data-dir=*) DATA_DIR="${1#--data-dir=}"; shift ;;
        -*) EXTRA+=("$1"); shift ;;
        *) if [ -z "$OUT" ] && [ ${#EXTRA[@]} -eq 0 ]; then OUT="$1"; else EXTRA+=("$1"); fi; shift ;;
    esac
done
if [ -z "$DATA_DIR" ] || [ ! -d "$DATA_DIR" ]; then
    echo "$(basename "$0"): give --data-dir, the dataset's folder (see the comment at the top of $0)" >&2
    exit 2
fi
