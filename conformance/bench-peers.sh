#!/usr/bin/env bash
# Installs the servers `make bench` compares Palisade with, only what is
# missing: Debian's ejabberd and prosody (with lua-unbound, which Prosody's
# resolver wants). Idempotent: a second run installs nothing. Needs root for
# apt-get. The packages' own services are never started or configured: the
# benchmark runs each server as a child process with its own config and data
# directory under a temporary directory.
set -euo pipefail

missing=()
for pkg in ejabberd prosody lua-unbound; do
	if ! dpkg -s "$pkg" >/dev/null 2>&1; then
		missing+=("$pkg")
	fi
done
if ((${#missing[@]} > 0)); then
	echo "bench-peers: installing Debian packages: ${missing[*]}"
	apt-get update
	# policy-rc.d exit 101 keeps the packages' init scripts from starting
	# the system services during installation; it is removed afterwards
	# unless it was there before.
	created_policy=0
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		created_policy=1
	fi
	status=0
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" || status=$?
	if ((created_policy)); then
		rm -f /usr/sbin/policy-rc.d
	fi
	exit "$status"
fi
echo "bench-peers: ejabberd and prosody present"
