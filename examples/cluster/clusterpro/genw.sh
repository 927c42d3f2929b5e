#!/bin/sh
# CLUSTERPRO custom monitor (genw, synchronous) for the Vigil group
# "orders", the other way round: instead of the failover command, let
# CLUSTERPRO ask Vigil. Local recovery is Vigil's business, so a group
# that is restarting here is still healthy for CLUSTERPRO.
#   vigil status GROUP --check: 0 ready, 1 degraded/restarting, 3 gave up
#   or stopped, 4 unknown (no daemon)
vigil status orders --check >/dev/null 2>&1
rc=$?
[ "$rc" -le 1 ] && exit 0
exit 1
