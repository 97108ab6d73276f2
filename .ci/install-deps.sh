#!/usr/bin/env bash
# Installs the Debian packages Vigil needs to build and test, if any are missing.
#   libqb-dev   libqb IPC between hactl and clusterd (linked by clusterd and hactl)
#   iproute2    ip netns / veth / bridge for the namespace lab (tests, demo, benchmark)
#   iputils-ping  the lab's client probe
#   util-linux  setpriv and unshare, used by the lab
#   resource-agents  OCF agents (ocf:heartbeat:Dummy) the tests run unmodified
#   curl, python3    the example web service agent (Examples/web-service)
#   fence-agents  fence_dummy, the fence agent the fencing tests run unmodified (and the real agents: fence_ipmilan, fence_apc, ...)
#   nftables    random frame loss in the lab's switch namespace (loss tests and Examples/bench/loss.sh)
#   libsystemd-dev  sd-bus, systemd's D-Bus API for systemd:UNIT resources (clusterd links libsystemd)
#   systemd     the tests run a private systemd (PID 1 of its own namespace) per lab node
#   python3-fusepy  a slow disk for the tests (Tests/tools/slowfs.py, a FUSE passthrough whose fsync stalls)
#   corosync, corosync-qdevice, corosync-qnetd, libcpg-dev, libvotequorum-dev, libquorum-dev, libcmap-dev, libcfg-dev, libcorosync-common-dev
#               Corosync as a membership engine (issue 10): the C libraries clusterd's bindings link,
#               and the daemon the namespace lab runs once per node (never in the root namespace:
#               the package's own start is refused while it installs)
set -euo pipefail
pkgs=(libqb-dev iproute2 iputils-ping util-linux procps resource-agents fence-agents curl python3 nftables python3-fusepy libsystemd-dev systemd
      corosync corosync-qdevice corosync-qnetd libcpg-dev libvotequorum-dev libquorum-dev libcmap-dev libcfg-dev libcorosync-common-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then echo "need root to install ${missing[*]}" >&2; exit 1; fi
  apt-get update -qq
  # No package may start its daemon here (corosync's would run in the root namespace): the
  # policy-rc.d convention makes invoke-rc.d refuse, for the duration of this install only.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    own_policy=1
  fi
  trap '[ $own_policy = 1 ] && rm -f "$policy"' EXIT
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
