#!/usr/bin/python3
"""slixmpp (1.8.3) scenario for the encryption_required conformance test
(encryption_test.go), built on the client of slix.py.

Usage: slix_encryption.py [options] raw ACCOUNT   (jid/resource:password)

  raw   log in, then for each line of stdin (one <message/> with an id)
        send it as raw XML, as a client with a broken or hostile OMEMO
        plugin would, and wait for the server's answer: print
        "REFUSED <id> <error type> <condition> <text>" for an error, or
        fail ("FAIL no error for <id>") when none comes within
        --step-timeout.
"""

import asyncio
import re
import sys

import slix
from slix import Client, fail, out

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


async def sc_raw(account):
    c = Client(account)
    errors = {}

    def on_error(msg):
        # slixmpp 1.8.3 does not know the RFC 6120 condition
        # policy-violation (msg["error"]["condition"] is empty): read the
        # element.
        err = msg.xml.find("{jabber:client}error")
        conds = [c.tag.split("}", 1)[1] for c in (err if err is not None else [])
                 if c.tag.startswith("{%s}" % STANZAS) and c.tag != "{%s}text" % STANZAS]
        errors[msg["id"]] = (msg["error"]["type"], conds[0] if conds else "(none)", msg["error"]["text"])

    c.add_event_handler("message_error", on_error)
    await c.start()
    out("READY", c.boundjid.full)
    for line in sys.stdin.read().splitlines():
        if not line.strip():
            continue
        m = re.search(r"""\sid=['"]([^'"]+)['"]""", line)
        if m is None:
            fail("no id in " + line)
        mid = m.group(1)
        c.send_raw(line)
        try:
            await asyncio.wait_for(_until(lambda: mid in errors), slix.ARGS.step_timeout)
        except asyncio.TimeoutError:
            fail("no error for " + mid)
        typ, cond, text = errors[mid]
        out("REFUSED", mid, typ, cond, text)
    await c.stop()


async def _until(pred):
    while not pred():
        await asyncio.sleep(0.05)


def main():
    scenario = sys.argv.pop(1)
    if scenario != "raw":
        fail("unknown scenario " + scenario)
    slix.run_script(lambda accounts: sc_raw(accounts[0]), 1, ())


if __name__ == "__main__":
    main()
