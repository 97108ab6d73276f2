#!/usr/bin/env bash
# Scale: N nodes in namespaces, R floating addresses and A ocf:heartbeat:Dummy resources spread
# over them by preference. Measures the time from `hactl apply` until everything runs exactly
# once, samples every 3 s for a minute (addresses or resources on two nodes, moves), the idle CPU
# of the busiest clusterd, then kills the non-coordinator node holding the most and times the
# recovery of its addresses, then of everything it ran.
# Last line: placed_ms= moves_after_settle= dual_max= idle_cpu_pct= addresses_recover_ms= recover_ms=
# Usage: Examples/bench/scale.sh [--nodes N] [--addresses R] [--resources A] [--sample SECONDS]
set -euo pipefail
source "$(dirname "$0")/prepare.sh"
exec .build/static/release/vigil-lab scale "$@"
