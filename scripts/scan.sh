#!/usr/bin/env bash
# Security scan: bandit over the plantcdn package, pip-audit over the installed
# dependencies.  Exit status: 0 clean; 1 findings; 3 the vulnerability service could
# not be reached or could not audit the dependencies (reported, never a silent pass).
#
#   PLANTCDN_VENV            virtualenv to scan           [default: .venv]
#   PLANTCDN_SCAN_SEVERITY   bandit level that fails      [default: medium]
#                            (lower-severity findings are listed, for review)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PLANTCDN_VENV:-.venv}
PY="$VENV/bin/python"
SEVERITY=${PLANTCDN_SCAN_SEVERITY:-medium}

if [ ! -x "$PY" ]; then
  echo "scan: no virtualenv at $VENV (run: bash scripts/test.sh, or ./starter.sh start)" >&2
  exit 2
fi
if ! "$PY" -m bandit --version >/dev/null 2>&1 || ! "$PY" -m pip_audit --version >/dev/null 2>&1; then
  echo "scan: installing bandit and pip-audit into $VENV"
  "$PY" -m pip install --quiet bandit pip-audit
fi

status=0

echo "== bandit: static analysis of plantcdn/ (fails at severity >= $SEVERITY)"
if "$PY" -m bandit -r plantcdn -c scripts/bandit.yaml -q --severity-level "$SEVERITY" \
     -f custom --msg-template "{relpath}:{line}: {test_id} [{severity}/{confidence}] {msg}"; then
  echo "bandit: no findings at severity >= $SEVERITY"
else
  echo "bandit: FINDINGS above (severity >= $SEVERITY)"
  status=1
fi
lows=$("$PY" -m bandit -r plantcdn -c scripts/bandit.yaml -q --severity-level low \
         -f custom --msg-template "  {relpath}:{line}: {test_id} [{severity}] {msg}" || true)
if [ -n "$lows" ] && [ "$SEVERITY" != low ]; then
  echo "bandit: lower-severity notes, for review (do not fail the scan):"
  echo "$lows"
fi

echo
echo "== pip-audit: known vulnerabilities of the installed dependencies (PyPI advisory data)"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
set +e
"$PY" -m pip_audit --local --skip-editable --progress-spinner off -f json -o "$report" 2>"$report.err"
audit_rc=$?
"$PY" - "$report" "$audit_rc" "$report.err" <<'PYEOF'
import json
import sys

path, rc, err_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    with open(err_path, encoding="utf-8", errors="replace") as f:
        err = f.read().strip()
except OSError:
    err = ""
try:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
except (OSError, ValueError):
    print("pip-audit: NOT DONE - it produced no report (the vulnerability service could not be reached?)")
    if err:
        print("  " + err.splitlines()[-1][:300])
    sys.exit(3)
deps = data.get("dependencies", [])
skipped = [d for d in deps if d.get("skip_reason")]
vulnerable = [d for d in deps if d.get("vulns")]
audited = len(deps) - len(skipped)
for dep in vulnerable:
    for vuln in dep["vulns"]:
        fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
        print(f"  {dep['name']} {dep.get('version', '?')}: {vuln.get('id')} (fixed in: {fixes})")
print(f"pip-audit: {len(deps)} dependencies, {audited} audited, {len(skipped)} not audited, "
      f"{len(vulnerable)} with known vulnerabilities")
if vulnerable:
    sys.exit(1)
if skipped:
    print("pip-audit: NOT DONE - the vulnerability service (PyPI's JSON API) could not be "
          f"reached or did not know {len(skipped)} of them; e.g. {skipped[0]['skip_reason']}")
    print("  This is not a pass: run the scan again where pypi.org is reachable.")
    sys.exit(3)
if rc not in (0, 1):
    print(f"pip-audit: NOT DONE - exit status {rc}")
    sys.exit(3)
print("pip-audit: no known vulnerabilities")
PYEOF
audit_status=$?
set -e
rm -f "$report.err"
if [ "$audit_status" -ne 0 ]; then
  if [ "$status" -eq 0 ] || [ "$audit_status" -eq 1 ]; then status=$audit_status; fi
fi

echo
case $status in
  0) echo "scan: clean" ;;
  1) echo "scan: FINDINGS (see above)" ;;
  3) echo "scan: INCOMPLETE - the dependency audit could not be done (see above)" ;;
esac
exit "$status"
