# Sourced by the recipes with their arguments. Reads the output folder OUT (an optional first
# argument that is not a flag, or `--out DIR` anywhere), `--data-dir DIR` and `--pretrained FILE`
# (each with its value, anywhere, so `--data-dir D --pretrained F OUT` works); whatever else is given
# stays in EXTRA and goes to coreaug unchanged (later flags override the recipe's). An argument that
# starts with '-' is a flag, never OUT; a folder after other flags (`--seeds 1 OUT`) is not OUT
# either (coreaug refuses it as an extra argument). A recipe that sets NEEDS_DATA_DIR=1 before
# sourcing this refuses to start without --data-dir (its dataset); for the others a given
# --data-dir (and any --pretrained) is put first in EXTRA.
recipe_error() { echo "$(basename "$0"): $1" >&2; exit 2; }
recipe_value() {  # recipe_value FLAG VALUE: sets DATA_DIR, PRETRAINED or OUT
    [ -n "$2" ] && [ "${2#-}" = "$2" ] || recipe_error "$1 needs a value (got '${2-}')"
    case "$1" in
        --data-dir) DATA_DIR="$2" ;;
        --pretrained) PRETRAINED="$2" ;;
        --out) [ -z "$OUT" ] || recipe_error "give the output folder once (OUT or --out), got $OUT and $2"
               OUT="$2" ;;
    esac
}
DATA_DIR="" OUT="" PRETRAINED="" EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --data-dir|--pretrained|--out) recipe_value "$1" "${2-}"; shift 2 ;;
        --data-dir=*|--pretrained=*|--out=*) recipe_value "${1%%=*}" "${1#*=}"; shift ;;
        -*) EXTRA+=("$1"); shift ;;
        *) if [ -z "$OUT" ] && [ ${#EXTRA[@]} -eq 0 ]; then OUT="$1"; else EXTRA+=("$1"); fi; shift ;;
    esac
done
if [ "${NEEDS_DATA_DIR:-}" = 1 ]; then
    if [ -z "$DATA_DIR" ]; then
        recipe_error "give --data-dir, the dataset's folder (see the comment at the top of $0)"
    elif [ ! -d "$DATA_DIR" ]; then
        recipe_error "--data-dir $DATA_DIR is not a folder; give the dataset's folder (see the comment at the top of $0)"
    fi
elif [ -n "$DATA_DIR" ]; then
    EXTRA=(--data-dir "$DATA_DIR" ${EXTRA[@]+"${EXTRA[@]}"})
fi
[ -z "$PRETRAINED" ] || EXTRA=(--pretrained "$PRETRAINED" ${EXTRA[@]+"${EXTRA[@]}"})
