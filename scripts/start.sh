#!/usr/bin/env bash
# npm start: set up what is missing, then run `castellan dev` on the examples.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_deps
bash "$root/scripts/tools.sh" nats
cd "$root"
exec node --disable-warning=ExperimentalWarning bin/castellan.js dev -f examples/castellan.dev.yaml "$@"
