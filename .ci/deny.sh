#!/usr/bin/env bash
# Dependency hygiene with cargo-deny (configuration: deny.toml at the repository
# root): security advisories, licences, duplicate crate versions and crate
# sources, all four checks, without network access for the advisory data.
#
# - Installs the pinned cargo-deny from crates.io unless `cargo deny --version`
#   already reports that version (a few minutes, once per machine).
# - Reads the RustSec advisory database from a local snapshot: $OREX_ADVISORY_DB,
#   by default ../shared/advisory-db next to the repository (or next to the
#   local checkout it was cloned from). It is never fetched (these machines
#   cannot reach its git host). The snapshot is linked into a temporary
#   directory, removed on exit, in the layout cargo-deny expects; nothing is
#   written into the repository.
# - Runs `cargo deny --offline --locked check` for advisories, bans, licenses
#   and sources. Exits non-zero on any finding.
#
# Run from anywhere: it works from the repository root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# deny.toml uses cargo-deny 0.20 syntax (`--offline` replaced the old
# `check --disable-fetch`), and the database directory name below is derived
# by this version; bump them together.
CARGO_DENY_VERSION=0.20.2

if [[ "$(cargo deny --version 2>/dev/null || true)" != "cargo-deny $CARGO_DENY_VERSION" ]]; then
  echo "deny.sh: installing cargo-deny $CARGO_DENY_VERSION from crates.io" >&2
  cargo install --locked "cargo-deny@$CARGO_DENY_VERSION"
fi

# The advisory database snapshot: a copy of the RustSec advisory-db repository
# (crates/, rust/, SNAPSHOT.md), without its .git. $OREX_ADVISORY_DB if set;
# else shared/advisory-db beside this repository; else, for a clone of a local
# checkout (git clone /path/to/main), shared/advisory-db beside that checkout.
if [[ -n "${OREX_ADVISORY_DB:-}" ]]; then
  src=$OREX_ADVISORY_DB
else
  src=../shared/advisory-db
  origin=$(git config --get remote.origin.url 2> /dev/null || true)
  if [[ ! -d "$src/crates" && -n "$origin" && -d "$origin/../shared/advisory-db/crates" ]]; then
    src="$origin/../shared/advisory-db"
  fi
fi
if [[ ! -d "$src/crates" ]]; then
  echo "deny.sh: no advisory database snapshot at '$src' (expected a copy of the RustSec" >&2
  echo "advisory-db with a crates/ directory). Set OREX_ADVISORY_DB to its path." >&2
  exit 1
fi
src=$(cd "$src" && pwd -P)

# The snapshot's date, for cargo-deny's staleness check (maximum-db-staleness in
# deny.toml): the first YYYY-MM-DD in SNAPSHOT.md, else the newest advisory date.
snapshot_date=""
if [[ -f "$src/SNAPSHOT.md" ]]; then
  snapshot_date=$(grep -oE '\b[0-9]{4}-[0-9]{2}-[0-9]{2}\b' "$src/SNAPSHOT.md" | head -n 1 || true)
fi
if [[ -z "$snapshot_date" ]]; then
  snapshot_date=$(grep -rhoE '^date = "[0-9]{4}-[0-9]{2}-[0-9]{2}"' "$src/crates" \
    | grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}' | sort | tail -n 1 || true)
fi
if [[ -z "$snapshot_date" ]]; then
  echo "deny.sh: cannot tell the date of the advisory database at '$src'" >&2
  exit 1
fi

# cargo-deny opens the database for the url in deny.toml's db-urls at
# <db-path>/<last url segment>-<xxhash64 of the url>; for
# https://github.com/rustsec/advisory-db that is advisory-db-3157b0e258782691
# (cargo-deny >= 0.18). With --offline it only reads crates/**/*.md and takes
# the time of the last fetch from .git/FETCH_HEAD's modification time.
db_root=$(mktemp -d "${TMPDIR:-/tmp}/orex-deny.XXXXXX")
trap 'rm -rf "$db_root"' EXIT
db="$db_root/advisory-db-3157b0e258782691"
mkdir -p "$db/.git"
ln -s "$src/crates" "$db/crates"
touch -d "$snapshot_date" "$db/.git/FETCH_HEAD"
export OREX_DENY_DB_ROOT="$db_root"
echo "deny.sh: advisory database $src (snapshot of $snapshot_date), not fetched" >&2

# With --offline, cargo-deny's own `cargo fetch` and `cargo metadata` cannot
# download crates: fetch them from crates.io first if they are not all cached.
if ! cargo metadata --locked --offline --format-version 1 > /dev/null 2>&1; then
  cargo fetch --locked
fi

# -D: a skip entry in deny.toml that matches nothing, or is no longer needed,
# fails too, so the exceptions are removed as soon as they are obsolete.
cargo deny --offline --locked check \
  -D unmatched-skip -D unnecessary-skip \
  advisories bans licenses sources
