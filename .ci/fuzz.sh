#!/usr/bin/env bash
# Fuzzing smoke run: every cargo-fuzz target in tests/fuzz, for a short,
# bounded time each (OREX_FUZZ_SECONDS, default 20), starting from the corpus
# kept in the repository (read-only: new inputs go to a temporary folder).
# Any crash, panic, timeout or out-of-memory fails, and libFuzzer leaves the
# input under tests/fuzz/artifacts/<target>/ to reproduce it with
#   cargo +nightly fuzz run --fuzz-dir tests/fuzz <target> <that file>
# Needs the nightly toolchain (on these machines) and cargo-fuzz (installed
# here, pinned, when missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -qF "$version"; then
  cargo install --locked --quiet "cargo-fuzz@$version"
fi
seconds=${OREX_FUZZ_SECONDS:-20}
targets=(token_verify policy_parse reference_parse page_token requests)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo +nightly fuzz build --fuzz-dir tests/fuzz
for target in "${targets[@]}"; do
  mkdir -p "$work/$target"
  echo "fuzz: $target for ${seconds}s"
  if ! cargo +nightly fuzz run --fuzz-dir tests/fuzz "$target" "$work/$target" "tests/fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 > "$work/$target.log" 2>&1; then
    tail -n 40 "$work/$target.log" >&2
    echo "fuzz: $target FAILED (the input is kept in tests/fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$work/$target.log" | tr '\n' ' '
  echo
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"
