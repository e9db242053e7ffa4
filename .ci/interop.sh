#!/usr/bin/env bash
# Interop check: a Python member client (grpcio, installed from PyPI into a
# throwaway venv) talks to a real `orex up` stack over mutual TLS with a
# certificate-bound token. Everything runs on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work=$(mktemp -d)
orex_pid=""
cleanup() {
  if [[ -n "$orex_pid" ]]; then kill -INT "$orex_pid" 2>/dev/null || true; wait "$orex_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/python/requirements.txt
mkdir -p "$work/gen"
"$work/venv/bin/python" -m grpc_tools.protoc -I proto --python_out="$work/gen" --grpc_python_out="$work/gen" \
  $(cd proto && find orex -name '*.proto')

cargo build --quiet --locked -p orex-cli --bin orex
gateway_port=17100
sharing_port=17101
risk_port=17102
timeout 300 target/debug/orex up --dir "$work/dev" --gateway-port "$gateway_port" --sharing-port "$sharing_port" --risk-port "$risk_port" \
  > "$work/up.log" 2>&1 &
orex_pid=$!

# Wait (bounded) until the gateway answers.
for _ in $(seq 1 100); do
  if target/debug/orex report list --bundle "$work/dev/bundles/us-alice" > /dev/null 2>&1; then break; fi
  sleep 0.2
done

timeout 60 "$work/venv/bin/python" tests/interop/python/member_client.py \
  "127.0.0.1:$gateway_port" "$work/dev/bundles" "$work/gen"
