#!/usr/bin/env bash
# Lints and format-checks the protobuf contract under proto/ with buf, pinned
# through npm in .ci/buf (package.json + package-lock.json). Exits non-zero on
# any lint finding or on any file that `buf format` would change (the diff is
# printed). Run from anywhere: it works from the repository root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -d .ci/buf/node_modules ]]; then
  npm ci --no-audit --no-fund --silent --prefix .ci/buf
fi

buf=.ci/buf/node_modules/.bin/buf
"$buf" lint
"$buf" format -d --exit-code
