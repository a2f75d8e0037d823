#!/usr/bin/env bash
# Installs Debian's chromium for the report-rendering test (headless screenshot of the HTML
# audit report). Best effort: when it cannot be installed (no apt, no root, offline), the test
# that needs it skips with a clear reason; nothing else depends on it.
set -u
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  echo "[browser] chromium present"
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[browser] chromium missing and cannot apt-get install it here; the browser test will skip"
  exit 0
fi
echo "[browser] installing chromium (Debian package)"
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
  || echo "[browser] chromium install failed; the browser test will skip"
exit 0
