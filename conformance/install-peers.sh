#!/usr/bin/env bash
# Installs the third-party XMPP clients the conformance tests drive, only
# what is missing: Debian packages (slixmpp, aioxmpp, go-sendxmpp, profanity
# with tmux to drive it and openssl to hash its CA directory, gpg for the
# archive export test) and the npm packages pinned in
# conformance/package-lock.json (xmpp.js, ws).
# Idempotent: a second run installs nothing. Needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
for pkg in python3-slixmpp python3-aioxmpp go-sendxmpp gpg profanity tmux openssl; do
	if ! dpkg -s "$pkg" >/dev/null 2>&1; then
		missing+=("$pkg")
	fi
done
if ((${#missing[@]} > 0)); then
	echo "install-peers: installing Debian packages: ${missing[*]}"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "install-peers: installing Debian packages: nodejs npm"
	if ((${#missing[@]} == 0)); then
		apt-get update
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm
fi

if ! test -d node_modules/@xmpp/client || ! test -d node_modules/ws; then
	echo "install-peers: installing npm packages from conformance/package-lock.json (@xmpp/client, ws)"
	npm ci --no-audit --no-fund
fi

echo "install-peers: all peers present"
