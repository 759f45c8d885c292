#!/usr/bin/env bash
# npm test: set up what is missing, then lint, typecheck, unit and integration
# tests (real NATS and Kubernetes), with timings per phase and one closing line.
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

node -e '
  let p = 0, f = 0, s = 0;
  for (const file of process.argv.slice(1)) {
    try { const r = require(file); p += r.numPassedTests; f += r.numFailedTests + r.numRuntimeErrorTestSuites; s += r.numPendingTests + r.numTodoTests; }
    catch { f += 1; console.error(`no results in ${file}`); }
  }
  console.log(`tests: ${p} passed, ${f} failed` + (s ? `, ${s} skipped` : ""));
' "$out/unit.json" "$out/integration.json"
rm -rf "$out"
say "npm test finished in $((SECONDS - t0))s (exit $status)"
exit $status
