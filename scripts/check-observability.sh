#!/usr/bin/env bash
# Checks the observability pack (docs/observability.md):
#   1. `promtool check rules` and `promtool test rules` of docs/prometheus/ (every alert has a
#      unit test that fires it and a healthy case that does not);
#   2. every metric the rules and the Grafana dashboard name is exported by the kernel or the
#      operator (scripts/check-metric-names.py);
#   3. the chart's copies (charts/fdc/files/) equal docs/, and with helm on PATH, the chart's
#      PrometheusRule renders exactly the rule groups of docs/prometheus/fdc-rules.yaml (also
#      with prometheusRule.runbookBaseUrl set) and its dashboard ConfigMap exactly
#      docs/grafana/fdc-dashboard.json.
# Installs Debian's `prometheus` package (which ships promtool) when promtool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing prometheus (for promtool)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    else
        echo "missing: promtool; install it (e.g. sudo apt-get install prometheus)" >&2
        exit 1
    fi
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

promtool check rules docs/prometheus/fdc-rules.yaml
(cd docs/prometheus && promtool test rules fdc-rules.test.yaml)
python3 scripts/check-metric-names.py

for pair in "docs/prometheus/fdc-rules.yaml charts/fdc/files/fdc-rules.yaml" \
    "docs/grafana/fdc-dashboard.json charts/fdc/files/fdc-dashboard.json"; do
    # shellcheck disable=SC2086 # two paths on purpose
    set -- $pair
    if ! cmp -s "$1" "$2"; then
        echo "$2 differs from $1; run: cp $1 $2" >&2
        exit 1
    fi
done
echo "charts/fdc/files/ equals docs/"

if ! command -v helm >/dev/null 2>&1; then
    echo "helm not on PATH: the chart render comparison runs in .ci/operator-checks"
    exit 0
fi
image="--set image.repository=registry.example.com/fdc-operator"
# shellcheck disable=SC2086
helm template fdc charts/fdc $image --set prometheusRule.enabled=true \
    --set grafanaDashboard.enabled=true >"$work/plain.yaml"
# shellcheck disable=SC2086
helm template fdc charts/fdc $image --set prometheusRule.enabled=true \
    --set prometheusRule.runbookBaseUrl=https://git.example.com/fdc/blob/main/docs/runbook.md \
    >"$work/linked.yaml"
python3 - "$work" <<'PY'
import json, sys, yaml

work = sys.argv[1]
docs_rules = yaml.safe_load(open("docs/prometheus/fdc-rules.yaml"))
docs_dash = json.load(open("docs/grafana/fdc-dashboard.json"))

def objects(path):
    return [d for d in yaml.safe_load_all(open(path)) if d]

def rule(path):
    [r] = [d for d in objects(path) if d["kind"] == "PrometheusRule"]
    return r["spec"]

plain = rule(f"{work}/plain.yaml")
assert plain == docs_rules, "the chart's PrometheusRule differs from docs/prometheus/fdc-rules.yaml"
yaml.safe_dump(plain, open(f"{work}/rendered-rules.yaml", "w"))
linked = rule(f"{work}/linked.yaml")
urls = [r["annotations"]["runbook_url"] for g in linked["groups"] for r in g["rules"]]
assert all(u.startswith("https://git.example.com/fdc/blob/main/docs/runbook.md#") for u in urls), urls
for g in linked["groups"]:
    for r in g["rules"]:
        r["annotations"]["runbook_url"] = r["annotations"]["runbook_url"].replace(
            "https://git.example.com/fdc/blob/main/docs/runbook.md#", "docs/runbook.md#")
assert linked == docs_rules, "prometheusRule.runbookBaseUrl changed more than the runbook links"
[cm] = [d for d in objects(f"{work}/plain.yaml") if d["kind"] == "ConfigMap" and "fdc-dashboard.json" in d.get("data", {})]
assert cm["metadata"]["labels"]["grafana_dashboard"] == "1", cm["metadata"]["labels"]
assert json.loads(cm["data"]["fdc-dashboard.json"]) == docs_dash, "the chart's dashboard differs from docs/"
print(f"chart renders the {sum(len(g['rules']) for g in plain['groups'])} alerts of docs/prometheus/fdc-rules.yaml "
      f"and the dashboard of docs/grafana/ ({len(docs_dash['panels'])} panels)")
PY
promtool check rules "$work/rendered-rules.yaml" >/dev/null
echo "observability checks passed"
