#!/usr/bin/env bash
# The newcomer's tour: builds secretfs and runs it in the foreground on the
# development config deploy/dev.json (a JSON file backend and a generator of
# short-lived credentials), mounted at /tmp/secretfs-dev. Edit
# deploy/dev-secrets.json and watch the files change; Ctrl-C unmounts.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
MNT=/tmp/secretfs-dev
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"

# Show the files once they appear, from the background.
(
	for _ in $(seq 100); do
		grep -q " $MNT .* - fuse.secretfs " /proc/self/mountinfo && break
		sleep 0.1
	done
	echo
	echo "== secretfs is serving $MNT:"
	$SUDO find "$MNT" -exec ls -ld {} + 2>/dev/null | sed 's/^/   /'
	echo "== $MNT/app/api-key:"
	$SUDO cat "$MNT/app/api-key"; echo
	echo "== $MNT/db.env (rotates every ~25 s):"
	$SUDO cat "$MNT/db.env"
	echo
	echo "Edit deploy/dev-secrets.json and run: ${SUDO:+sudo }cat $MNT/app/api-key"
	echo "Press Ctrl-C to stop; the mount goes away."
) &

exec $SUDO build/secretfs --config deploy/dev.json
