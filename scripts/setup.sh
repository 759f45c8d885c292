#!/usr/bin/env bash
# Sets up everything Castellan needs, idempotently: Node >= 22.19, npm
# dependencies, and the tools built from source (scripts/tools.sh).
#   scripts/setup.sh [all|nats|...]   (default all)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
say "node $(node --version) at $(command -v node)"
phase "npm dependencies" ensure_deps
phase "tools (${1:-all})" bash "$root/scripts/tools.sh" "${1:-all}"
