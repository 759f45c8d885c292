#!/usr/bin/env bash
# npm run bench [-- --quick|--smoke] [--only a,b] [--out FILE]: set up what is
# missing (npm dependencies, nats-server), then run the benchmarks with their
# same-run baselines (bench/run.ts) and write bench/results/latest.json.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_deps
bash "$root/scripts/tools.sh" nats
cd "$root"
exec node --disable-warning=ExperimentalWarning bench/run.ts "$@"
