#!/usr/bin/env bash
# calm's CI gate in plain shell (docs/ci.md): re-check a certified thresholds.json on fresh
# labelled data. Fails the job on "violation detected" or a layer regression (calm check exit 1);
# with CALM_REQUIRE_CERTIFIED=1 also on "inconclusive". Exit 2 (bad input) fails it too.
#
#   CALM=path/to/calm scripts/ci_gate.sh THRESHOLDS.json FRESH.jsonl[.gz] [OUT_DIR]
set -euo pipefail
CALM="${CALM:-calm}"
THRESHOLDS="$1"
DATA="$2"
OUT="${3:-calm-check}"
args=(check --thresholds "$THRESHOLDS" --data "$DATA" --out "$OUT" --summary "$OUT/summary.md")
if [ "${CALM_REQUIRE_CERTIFIED:-0}" = 1 ]; then
  args+=(--require-certified)
fi
status=0
"$CALM" "${args[@]}" || status=$?
verdict=$(sed -n 's/^  "verdict": "\(.*\)",$/\1/p' "$OUT/check.json" 2>/dev/null || true)
case "$status" in
  0) echo "calm gate passed (${verdict:-?})" ;;
  1) echo "calm gate FAILED (${verdict:-?}): see $OUT/check.json and $OUT/summary.md" >&2 ;;
  *) echo "calm check could not run (exit $status)" >&2 ;;
esac
exit "$status"
