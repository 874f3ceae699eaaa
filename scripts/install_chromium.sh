#!/usr/bin/env bash
# Headless Chromium for the report-page tests (tests/chromium.py drives it over the DevTools pipe): Debian's
# `chromium` package, installed with apt-get when missing (root or sudo required for that).
#
#   bash scripts/install_chromium.sh          (`make install` runs it)
#
# Without apt-get or the rights to use it, it says so and stops without failing (the report tests then
# skip, naming the reason), except in CI (env CI set), where the tests must run: there it fails.
set -euo pipefail

msg() { printf '[install_chromium] %s\n' "$*"; }

for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null; then
    msg "$name is installed ($(command -v "$name"))"
    exit 0
  fi
done

give_up() {
  if [ -n "${CI:-}" ]; then
    printf '[install_chromium] error: %s\n' "$*" >&2
    exit 1
  fi
  msg "warning: $* (the report-page tests will be skipped)"
  exit 0
}

command -v apt-get >/dev/null || give_up "no chromium and no apt-get: install Chromium by hand"
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || give_up "no chromium: run as root or install the chromium package"
  SUDO=(sudo)
fi
msg "installing Debian's chromium package"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
command -v chromium >/dev/null || give_up "apt-get ran but no chromium command is installed"
msg "installed $(chromium --version 2>/dev/null | head -1)"
