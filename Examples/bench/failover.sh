#!/usr/bin/env bash
# Unplanned failover benchmark: N times, a fresh three-node cluster in namespaces with
# default timing, a client pinging the floating IP every 10 ms, the owner SIGKILLed and its
# links taken down. Last line: outage_ms min=<x> median=<y> max=<z> runs=<n>
# Usage: Examples/bench/failover.sh [--runs N] [--preferred NODE_NUMBER] [--membership builtin|corosync|all] [--corosync-token MS]
# --membership corosync: the same with Corosync (Debian's) as the membership engine, its effective
# token and consensus printed per run; all: built-in, Corosync at its default token, and at
# --corosync-token (default 1000), side by side; last line failover_median_ms builtin=.. ...
set -euo pipefail
source "$(dirname "$0")/prepare.sh"
exec .build/static/release/vigil-lab bench "$@"
