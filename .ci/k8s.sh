#!/usr/bin/env bash
# Kubernetes manifests check: every overlay under k8s/overlays/ (each includes
# the backup component, k8s/backup) and the monitoring examples
# (k8s/monitoring) rendered with `kubectl kustomize` (offline), then validated
# with `kubernetes-validate --strict` (unknown fields fail) and scanned with
# `checkov --framework kubernetes` (offline; any failed check fails, unless
# the resource carries a `checkov.io/skip<N>: CKV_K8S_xx=<reason>`
# annotation). The Grafana dashboard must be valid JSON shipped unchanged in
# its ConfigMap, and every PromQL expression in it and in the alert rules
# must parse. The tools come from PyPI into a venv under target/ (gitignored,
# reused while the pins match). No cluster is needed or contacted.
#
#   bash .ci/k8s.sh          # renders into target/k8s-rendered/<name>.yaml
#
# tests/e2e/manifests.rs runs the real binaries with the dev overlay's
# ConfigMaps, takes a backup as the CronJob does, and checks that every
# orex_* metric the dashboard and the rules name is one the binaries export;
# this script checks what a cluster would be handed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Pinned together: kubernetes-validate 1.37.0 ships schemas for Kubernetes
# 1.25-1.37 and validates against 1.37 by default. promql-parser (Python
# bindings of the Rust crate) parses the dashboard's and the rules' PromQL.
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECKOV_VERSION=3.3.30
PROMQL_PARSER_VERSION=0.11.0

if ! command -v kubectl > /dev/null; then
  echo "k8s.sh: kubectl not found: it renders the overlays (kubectl kustomize, offline)." >&2
  exit 1
fi

# kustomize reads nothing outside the kustomization's folder, so the base
# carries a copy of the reference data: it must stay the shipped file.
if ! cmp -s services/reference/data/reference.toml k8s/base/config/reference.toml; then
  echo "k8s.sh: k8s/base/config/reference.toml differs from services/reference/data/reference.toml;" >&2
  echo "  copy it: cp services/reference/data/reference.toml k8s/base/config/reference.toml" >&2
  exit 1
fi

venv=target/k8s-venv/venv
stamp="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION checkov==$CHECKOV_VERSION promql-parser==$PROMQL_PARSER_VERSION"
if [[ "$(cat "$venv/.orex-pins" 2> /dev/null || true)" != "$stamp" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $stamp
  echo "$stamp" > "$venv/.orex-pins"
fi

out=target/k8s-rendered
rm -rf "$out"
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# kubernetes-validate passes unknown fields silently without --strict; make
# sure --strict, as installed, still refuses one.
cat > "$work/typo.yaml" << 'EOF'
apiVersion: v1
kind: Service
metadata:
  name: typo
spec:
  selectr: {}
EOF
if "$venv/bin/kubernetes-validate" --strict --quiet "$work/typo.yaml" > /dev/null 2>&1; then
  echo "k8s.sh: kubernetes-validate --strict accepted an unknown field; the check would prove nothing" >&2
  exit 1
fi

# What is rendered: each overlay, with the backup component it includes
# (rendered alone, the component's CronJob would run the placeholder image
# `orex`: every overlay must include it, and it is checked there), and the
# monitoring examples.
targets=()
for dir in k8s/overlays/*/; do
  targets+=("$(basename "$dir")=$dir")
  if ! grep -q -E '^  - \.\./\.\./backup$' "$dir/kustomization.yaml"; then
    echo "k8s.sh: $dir does not include the backup component (components: [../../backup])" >&2
    exit 1
  fi
done
targets+=("monitoring=k8s/monitoring/")

status=0
for target in "${targets[@]}"; do
  overlay=${target%%=*}
  dir=${target#*=}
  rendered="$out/$overlay.yaml"
  echo "k8s.sh: $overlay: kubectl kustomize $dir"
  kubectl kustomize "$dir" > "$rendered"

  # cert-manager's and the Prometheus operator's kinds have no schema in
  # kubernetes-validate (it knows Kubernetes' own API only);
  # tests/e2e/manifests.rs checks what the code needs of them. Any other
  # warning, and every error, fails.
  set +e
  "$venv/bin/kubernetes-validate" --strict --quiet "$rendered" > "$work/validate.log" 2>&1
  rc=$?
  set -e
  unexpected=$(grep -v -E "^WARN .* Couldn't find schema for kind ((Certificate|Issuer) with api version cert-manager\.io/v1|(ServiceMonitor|PrometheusRule) with api version monitoring\.coreos\.com/v1) " "$work/validate.log" || true)
  if [[ $rc -ne 0 || -n "$unexpected" ]]; then
    echo "k8s.sh: $overlay: kubernetes-validate --strict failed:" >&2
    cat "$work/validate.log" >&2
    status=1
  else
    kinds=$(grep -c '^kind:' "$rendered")
    echo "k8s.sh: $overlay: kubernetes-validate --strict: $kinds resources, no error (cert-manager and Prometheus operator kinds have no schema there)"
  fi

  # checkov scans a folder: one folder per overlay, holding only its render.
  mkdir -p "$work/checkov/$overlay"
  cp "$rendered" "$work/checkov/$overlay/$overlay.yaml"
  set +e
  "$venv/bin/checkov" -d "$work/checkov/$overlay" --framework kubernetes --skip-download \
    --compact -o json > "$work/checkov.json" 2> "$work/checkov.err"
  rc=$?
  set -e
  if ! "$venv/bin/python" - "$overlay" "$rc" "$work/checkov.json" << 'EOF'
import json, sys

overlay, rc, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    report = json.load(open(path))
except ValueError:
    print(f"k8s.sh: {overlay}: checkov gave no report", file=sys.stderr)
    sys.exit(1)
reports = report if isinstance(report, list) else [report]
passed = failed = 0
skipped = []
for r in reports:
    summary = r.get("summary", {})
    passed += summary.get("passed", 0)
    failed += summary.get("failed", 0) + summary.get("parsing_errors", 0)
    if summary.get("parsing_errors", 0):
        print(f"k8s.sh: {overlay}: checkov could not parse the render", file=sys.stderr)
    results = r.get("results", {})
    for c in results.get("failed_checks", []):
        print(f"k8s.sh: {overlay}: FAILED {c['check_id']} {c['check_name']} on {c['resource']}", file=sys.stderr)
    for c in results.get("skipped_checks", []):
        reason = (c.get("check_result") or {}).get("suppress_comment", "")
        skipped.append(f"{c['check_id']} on {c['resource']}: {reason}")
if passed == 0:
    print(f"k8s.sh: {overlay}: checkov ran no check (nothing parsed?)", file=sys.stderr)
    sys.exit(1)
print(f"k8s.sh: {overlay}: checkov: {passed} passed, {failed} failed, {len(skipped)} skipped")
for s in skipped:
    print(f"k8s.sh: {overlay}:   skipped {s}")
sys.exit(1 if failed or rc != 0 else 0)
EOF
  then
    cat "$work/checkov.err" >&2
    status=1
  fi
done

# The dashboard: valid JSON, shipped byte for byte in its ConfigMap (with
# the label Grafana's sidecar looks for), panels with unique ids, every query
# and every alert rule valid PromQL. Which orex_* metrics they name is
# checked against the running binaries by tests/e2e/manifests.rs.
if ! "$venv/bin/python" - k8s/monitoring/grafana-dashboard.json "$out/monitoring.yaml" << 'EOF'
import json, re, sys
import promql_parser
import yaml

dashboard_path, rendered_path = sys.argv[1], sys.argv[2]
problems = []
text = open(dashboard_path, encoding="utf-8").read()
try:
    dashboard = json.loads(text)
except ValueError as e:
    print(f"k8s.sh: monitoring: {dashboard_path} is not valid JSON: {e}", file=sys.stderr)
    sys.exit(1)

docs = [d for d in yaml.safe_load_all(open(rendered_path, encoding="utf-8")) if d]
maps = [d for d in docs if d["kind"] == "ConfigMap" and "grafana-dashboard.json" in d.get("data", {})]
if len(maps) != 1:
    problems.append("one ConfigMap must carry grafana-dashboard.json")
else:
    if maps[0]["data"]["grafana-dashboard.json"] != text:
        problems.append("the ConfigMap's grafana-dashboard.json differs from the file")
    if maps[0]["metadata"].get("labels", {}).get("grafana_dashboard") != "1":
        problems.append('the dashboard ConfigMap lacks the label grafana_dashboard: "1"')

def promql(where, expr):
    # Grafana's variables: ranges become a duration, the rest stay strings.
    expr = re.sub(r"\$__\w+", "5m", expr)
    try:
        promql_parser.parse(expr)
    except ValueError as e:
        problems.append(f"{where}: not PromQL ({e}): {expr}")

ids, queries = set(), 0
def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))
for p in panels(dashboard.get("panels", [])):
    if p.get("id") in ids:
        problems.append(f"panel id {p.get('id')} twice")
    ids.add(p.get("id"))
    if p.get("type") == "row":
        continue
    targets = p.get("targets", [])
    if not targets:
        problems.append(f"panel {p.get('title')!r} has no query")
    for target in targets:
        queries += 1
        promql(f"panel {p.get('title')!r}", target.get("expr", ""))
for v in dashboard.get("templating", {}).get("list", []):
    if v.get("type") == "query":
        m = re.fullmatch(r"label_values\((.*),\s*\w+\)", v["definition"])
        if not m:
            problems.append(f"variable {v['name']}: expected label_values(selector, label)")
        else:
            promql(f"variable {v['name']}", m.group(1))

rules = 0
for d in docs:
    if d["kind"] != "PrometheusRule":
        continue
    for group in d["spec"]["groups"]:
        for rule in group["rules"]:
            rules += 1
            name = rule.get("alert") or rule.get("record")
            promql(f"rule {name}", rule["expr"])
            if "alert" in rule and not (rule.get("labels", {}).get("severity") and rule.get("annotations", {}).get("summary")):
                problems.append(f"alert {name}: needs labels.severity and annotations.summary")

for p in problems:
    print(f"k8s.sh: monitoring: {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"k8s.sh: monitoring: dashboard JSON valid and shipped as is; {queries} panel queries and {rules} alert rules parse as PromQL")
EOF
then
  status=1
fi

if [[ $status -ne 0 ]]; then
  echo "k8s.sh: FAILED" >&2
  exit 1
fi
echo "k8s.sh: every overlay (with k8s/backup) and k8s/monitoring render, validate strictly and pass checkov"
