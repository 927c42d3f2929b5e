#!/bin/sh
# One Pacemaker node for tests/e2e/pacemaker_test.cpp (../shared/RECIPES.md
# §4b, RECIPES-HA.md §2). Run as
#   ip netns exec NS unshare --mount --uts --ipc --propagation private \
#     sh pcmk_node.sh NAME DIR SOCKET
# NAME: the node's hostname; DIR: the test's directory (cib.xml,
# corosync.conf, ocfrd/ with the agent); SOCKET: the node's Vigil daemon's
# control socket, reached in the node at vigil's default path.
# Private tmpfs for Pacemaker's and corosync's state, /run and /dev/shm, so
# that two nodes run on one machine; the OCF agents (ours among them) are
# bind-mounted here only. Writes DIR/NAME/mounted once the node's file
# system is ready (the test starts the node's Vigil in it then), and runs
# corosync and pacemakerd until both end.
set -eu
N=$1 D=$2 SOCK=$3
hostname "$N"
for d in /var/lib/pacemaker /var/lib/corosync /var/log/pacemaker /var/log/corosync /run /dev/shm; do
  mount -t tmpfs tmpfs "$d"
done
mkdir -p /run/crm /run/resource-agents /run/lock /run/vigil \
  /var/lib/pacemaker/cib /var/lib/pacemaker/pengine /var/lib/pacemaker/blackbox /var/lib/pacemaker/cores
ln -s "$SOCK" /run/vigil/vigil.sock
cp "$D/cib.xml" /var/lib/pacemaker/cib/cib.xml
chown -R hacluster:haclient /var/lib/pacemaker /run/crm /var/log/pacemaker
chmod 750 /var/lib/pacemaker/*
chmod 1777 /dev/shm
mount --bind "$D/ocfrd" /usr/lib/ocf/resource.d
mkdir -p "$D/$N"
touch "$D/$N/mounted"
corosync -f -c "$D/corosync.conf" > "$D/$N/corosync.log" 2>&1 &
# pacemakerd needs corosync's IPC: wait for it (bounded).
i=0
until corosync-cmapctl totem.cluster_name > /dev/null 2>&1; do
  i=$((i + 1))
  [ $i -le 200 ] || { echo "corosync did not come up" >&2; exit 1; }
  sleep 0.05
done
PCMK_logfile="$D/$N/pacemaker.log" pacemakerd > "$D/$N/pacemakerd.out" 2>&1 &
wait
