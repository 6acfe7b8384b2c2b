#!/usr/bin/env bash
# Make sure headless Chromium (Debian's package) is there for the screenshot test.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the screenshot test…"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  exit 0
fi
echo "error: chromium is missing; install Debian's 'chromium' package (as root: apt-get install chromium)" >&2
exit 1
