#!/usr/bin/env bash
# Quiet under loss: a settled three-node cluster in namespaces with default timing, one
# address per node, and an nftables rule in the lab's switch that drops node-to-node frames at
# random. Counts, over the whole run, from every daemon's log:
#   lease_losses (lease-lost), restarts (resource stops), owner_changes (resource starts, or an
#   address no longer on its node at the end), member_flaps (member-lost).
# Last line: lease_losses=<n> restarts=<n> owner_changes=<n> member_flaps=<n>
# Usage: Examples/bench/loss.sh [--loss PCT] [--minutes M] [--links 1|2] [--lossy-links 0,1]
#   e.g. --loss 30 --links 2 --lossy-links 0   (30 % on one of two heartbeat links)
set -euo pipefail
source "$(dirname "$0")/prepare.sh"
exec .build/static/release/vigil-lab loss "$@"
