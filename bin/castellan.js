#!/usr/bin/env node
// The `castellan` command: Node (>= 22.18) runs the TypeScript sources directly.
import '../cli/main.ts';
