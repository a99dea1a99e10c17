#!/usr/bin/env bash
# Headless Chromium for the browser tests (tests/integration/plugins): Debian's package, never a
# browser build downloaded by Playwright. Installs it when /usr/bin/chromium is missing; prints its path.
#
#   tools/chromium.sh
set -euo pipefail

CHROMIUM=/usr/bin/chromium
if [[ ! -x "$CHROMIUM" ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "chromium is missing and installing it needs root: apt-get install -y chromium" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
"$CHROMIUM" --version >&2
echo "$CHROMIUM"
