#!/usr/bin/env bash
# Installs the third-party XMPP clients the conformance tests drive, only
# what is missing: Debian packages (slixmpp, aioxmpp, go-sendxmpp, profanity
# with tmux to drive it and openssl to hash its CA directory, gpg for the
# archive export test, slapd and ldap-utils for the directory tests) and
# the npm packages pinned in conformance/package-lock.json (xmpp.js, ws, and
# stanza for the WebSocket tests).
# Installing slapd must not leave a system slapd running on port 389: the
# tests start their own. A policy-rc.d that forbids starting services is put
# in place for the install when none exists, and a slapd that started anyway
# is stopped.
# The C2SP witness test needs openssh-client (ssh-agent, ssh-add,
# ssh-keygen) and litewitness and witnessctl (filippo.io/torchwood v0.6.1),
# built with `go install` into conformance/bin (gitignored).
# Idempotent: a second run installs nothing. Needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
# prosody (with lua-unbound, its resolver) and ejabberd are the federation
# tests' partner servers (conformance/federation); started by the tests only.
for pkg in python3-slixmpp python3-aioxmpp go-sendxmpp gpg profanity tmux openssl slapd ldap-utils prosody lua-unbound ejabberd; do
	if ! dpkg -s "$pkg" >/dev/null 2>&1; then
		missing+=("$pkg")
	fi
done
if ! command -v ssh-agent >/dev/null 2>&1 || ! command -v ssh-keygen >/dev/null 2>&1 || ! command -v ssh-add >/dev/null 2>&1; then
	missing+=(openssh-client)
fi
if ((${#missing[@]} > 0)); then
	echo "install-peers: installing Debian packages: ${missing[*]}"
	apt-get update
	policy=/usr/sbin/policy-rc.d
	own_policy=false
	if ! test -e "$policy"; then
		printf '#!/bin/sh\n# install-peers.sh: start no service while installing\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		own_policy=true
	fi
	status=0
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" || status=$?
	if $own_policy; then
		rm -f "$policy"
	fi
	if ((status != 0)); then
		exit "$status"
	fi
	# The package's own slapd (pid file of its init script) must not stay up.
	if test -s /run/slapd/slapd.pid && kill -0 "$(cat /run/slapd/slapd.pid)" 2>/dev/null; then
		echo "install-peers: stopping the system slapd started by the package"
		kill "$(cat /run/slapd/slapd.pid)"
	fi
	if command -v update-rc.d >/dev/null 2>&1 && test -e /etc/init.d/slapd; then
		update-rc.d slapd disable >/dev/null 2>&1 || true
	fi
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "install-peers: installing Debian packages: nodejs npm"
	if ((${#missing[@]} == 0)); then
		apt-get update
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm
fi

npm_missing=()
for pkg in @xmpp/client ws stanza; do
	if ! test -d "node_modules/$pkg"; then
		npm_missing+=("$pkg")
	fi
done
if ((${#npm_missing[@]} > 0)); then
	echo "install-peers: installing npm packages from conformance/package-lock.json (missing: ${npm_missing[*]})"
	npm ci --no-audit --no-fund
fi

for cmd in litewitness witnessctl; do
	if ! test -x "bin/$cmd"; then
		echo "install-peers: go install filippo.io/torchwood/cmd/$cmd@v0.6.1 into conformance/bin"
		GOBIN="$PWD/bin" go install "filippo.io/torchwood/cmd/$cmd@v0.6.1"
	fi
done

echo "install-peers: all peers present"
