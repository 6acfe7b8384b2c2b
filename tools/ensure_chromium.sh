#!/usr/bin/env bash
# Make sure headless Chromium and its WebDriver (Debian's `chromium` and `chromium-driver`
# packages) are there for the screenshot test and the JupyterLab browser test.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's ${missing[*]} for the browser tests…"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  exit 0
fi
echo "error: ${missing[*]} missing; install Debian's packages (as root: apt-get install ${missing[*]})" >&2
exit 1
