#!/usr/bin/env bash
# npm test: set up what is missing, then lint, typecheck, unit and integration
# tests (real NATS and Kubernetes), then the end-to-end test on real nodes (pods
# run by kubelet + containerd: needs root and scripts/tools.sh node-runtime, which
# `setup all` runs as root), with timings per phase and one closing line.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t0=$SECONDS
cd "$root"
phase "setup" bash scripts/setup.sh all
phase "lint" npx eslint --max-warnings=0 .
phase "typecheck" npx tsc --noEmit -p tsconfig.json

out=$(mktemp -d)
status=0
jest() { node --experimental-vm-modules --disable-warning=ExperimentalWarning node_modules/jest/bin/jest.js "$@"; }
phase "unit tests" jest --selectProjects unit --json --outputFile="$out/unit.json" "$@" || status=1
phase "integration tests" jest --selectProjects integration --runInBand --json --outputFile="$out/integration.json" "$@" || status=1
# Never skipped: without root or the node runtime the e2e test fails, naming what is missing.
if [ "$(id -u)" != 0 ] || ! command -v containerd >/dev/null; then
  say "e2e tests need root and containerd, runc and the CNI plugins (sudo scripts/tools.sh node-runtime): they will fail"
fi
phase "e2e tests" jest --selectProjects e2e --runInBand --json --outputFile="$out/e2e.json" "$@" || status=1

node -e '
  let p = 0, f = 0, s = 0;
  for (const file of process.argv.slice(1)) {
    try { const r = require(file); p += r.numPassedTests; f += r.numFailedTests + r.numRuntimeErrorTestSuites; s += r.numPendingTests + r.numTodoTests; }
    catch { f += 1; console.error(`no results in ${file}`); }
  }
  console.log(`tests: ${p} passed, ${f} failed` + (s ? `, ${s} skipped` : ""));
' "$out/unit.json" "$out/integration.json" "$out/e2e.json"
rm -rf "$out"
say "npm test finished in $((SECONDS - t0))s (exit $status)"
exit $status
