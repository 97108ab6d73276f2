#!/usr/bin/env bash
# Application failover benchmark: N times, a fresh three-node cluster in namespaces with
# default timing runs the web service group (floating address + HTTP server agent +
# ocf:heartbeat:Dummy); an HTTP client in its own namespace fetches / every 20 ms; the node
# running the group is SIGKILLed and its links taken down.
# Last line: outage_ms min=<x> median=<y> max=<z> runs=<n>
# Usage: Examples/bench/app-failover.sh [--runs N] [--preferred NODE_NUMBER]
set -euo pipefail
source "$(dirname "$0")/prepare.sh"
exec .build/static/release/vigil-lab app-bench --root "$PWD" "$@"
