#!/usr/bin/env bash
# Two-node failover benchmark: N times, a fresh cluster of two data nodes and a witness in
# namespaces with default timing, a client pinging the floating IP every 10 ms, the owner
# (node2; --preferred 1 for the coordinator) SIGKILLed and its links taken down.
# Last line: outage_ms min=<x> median=<y> max=<z> runs=<n>
# Usage: Examples/bench/two-node.sh [--runs N] [--preferred 1|2]
set -euo pipefail
source "$(dirname "$0")/prepare.sh"
exec .build/static/release/vigil-lab bench --witness "$@"
