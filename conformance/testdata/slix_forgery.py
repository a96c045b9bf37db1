#!/usr/bin/python3
"""slixmpp (1.8.3) scenarios for the sender-forgery conformance tests
(forgery_test.go), built on the client of slix.py. slixmpp parses with
expat, which refuses XML that is not namespace-well-formed (duplicate
attributes, undeclared prefixes): one such stanza from the server makes it
send a not-well-formed stream error and disconnect.

Usage: slix_forgery.py [options] SCENARIO ACCOUNT   (jid/resource:password)

  listen   log in, print "READY <jid>", print "MESSAGE <from> <body>" for
           every message, until a message with body END arrives; then ping
           the server and print "STILL CONNECTED".
  history  log in (initial presence: offline messages are delivered), wait
           for a message with body END, read the whole archive (XEP-0313)
           and print "MAM <from> <body>" per item and "HISTORY <n>"; then
           ping the server and print "STILL CONNECTED".

Every disconnection prints "DISCONNECTED <reason>" and fails ("FAIL ...").
"""

import asyncio

import slix
from slix import Client, fail, out, until

PLUGINS = ("xep_0004", "xep_0059", "xep_0297", "xep_0313")


def watch(c):
    """Print every message and every disconnection of c; return the list
    of bodies received."""
    bodies = []

    def on_message(msg):
        if msg["body"]:
            out("MESSAGE", msg["from"].full, msg["body"])
            bodies.append(msg["body"])

    def on_disconnected(reason):
        out("DISCONNECTED", repr(reason))

    c.add_event_handler("message", on_message)
    c.add_event_handler("disconnected", on_disconnected)
    return bodies


async def still_connected(c):
    try:
        await c["xep_0199"].ping(jid=c.boundjid.domain, timeout=5)
    except Exception as e:  # noqa: BLE001 - any failure means the link is gone
        fail("ping after the test: %r" % (e,))
    out("STILL CONNECTED")


async def sc_listen(account):
    c = Client(account)
    bodies = watch(c)
    await c.start()
    out("READY", c.boundjid.full)
    await until(lambda: "END" in bodies or c.transport is None, "END")
    if c.transport is None:
        fail("disconnected before END")
    await still_connected(c)
    await c.stop()


async def sc_history(account):
    c = Client(account, plugins=PLUGINS)
    bodies = watch(c)
    await c.start()
    out("READY", c.boundjid.full)
    await until(lambda: "END" in bodies or c.transport is None, "END")
    if c.transport is None:
        fail("disconnected before END")
    n = 0
    try:
        async for res in c["xep_0313"].iterate(rsm={"max": 10}):
            fwd = res["mam_result"]["forwarded"]["stanza"]
            out("MAM", fwd["from"].full, fwd["body"])
            n += 1
    except Exception as e:  # noqa: BLE001
        fail("MAM query: %r" % (e,))
    out("HISTORY", n)
    await still_connected(c)
    await c.stop()


SCENARIOS = {"listen": sc_listen, "history": sc_history}


def main():
    import sys
    scenario = sys.argv.pop(1)
    fn = SCENARIOS[scenario]
    slix.run_script(lambda accounts: fn(accounts[0]), 1, ())


if __name__ == "__main__":
    main()
