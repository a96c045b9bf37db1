#!/usr/bin/python3
"""slixmpp (1.8.3) scenario for the journal-channels conformance test
(journal_channels_test.go), built on the client of slix.py.

Usage: slix_journal.py [options] --wait-dir DIR ALICE BOB CAROL   (jid/resource:password)

alice subscribes to bob and carol (both accept). Then, with the journal
working, alice sends raw IQs to bob's full JID (an XEP-0047 open and an
XEP-0050 execute; bob's slixmpp answers them), a status broadcast (bob and
carol see it) and a directed presence with status to bob; it prints
"CHANNELS OK". It prints "LOCK NOW" and waits for DIR/locked: while the
test holds the journal's lock, alice sends bob an IQ and a status
broadcast and must get internal-server-error (wait) for each ("REFUSED
iq|presence <condition> <type>"). It prints "UNLOCK NOW" and waits for
DIR/unlocked, then broadcasts a last status: bob must see it, and must not
have seen the refused one before it ("BOB SAW LOCKED STATUS" if he did).
"""

import asyncio
import os
import xml.etree.ElementTree as ET

import slix
from slix import Client, fail, out, until
from slixmpp.exceptions import IqError

STATUS = "journal status text"
DIRECTED = "directed status text"
LOCKED = "locked status text"
AFTER = "after unlock status text"


async def wait_file(path):
    await until(lambda: os.path.exists(path), path, timeout=60)


def raw_iq(c, to, payload, typ="set"):
    iq = c.Iq()
    iq["type"] = typ
    iq["to"] = to
    iq.append(ET.fromstring(payload))
    return iq


async def answer_of(c, iq):
    """The answer to iq: ("result", "") or ("error", condition type)."""
    try:
        await iq.send(timeout=20)
        return "result", ""
    except IqError as e:
        return "error", "%s %s" % (e.iq["error"]["condition"], e.iq["error"]["type"])


async def sc_channels(accounts):
    a, b, c = Client(accounts[0]), Client(accounts[1]), Client(accounts[2])
    statuses = {b.name: [], c.name: []}
    presence_errors = []
    for cl in (a, b, c):
        cl.auto_authorize = True
        cl.auto_subscribe = True
    for cl in (b, c):
        def on_presence(pres, cl=cl):
            if pres["from"].bare == a.boundjid.bare and pres["status"]:
                statuses[cl.name].append(pres["status"])
                out("STATUS", cl.name, pres["to"].full, pres["status"])
        cl.add_event_handler("presence_available", on_presence)
    a.add_event_handler("presence_error", lambda p: presence_errors.append(p))
    await a.start()
    await b.start()
    await c.start()
    for other in (b, c):
        a.send_presence_subscription(pto=other.boundjid.bare)

    def sub(x, y):
        return x.client_roster[y.boundjid.bare]["subscription"] if y.boundjid.bare in x.client_roster else "none"
    await until(lambda: sub(a, b) == "both" and sub(a, c) == "both", "subscriptions")

    bob = b.boundjid.full
    kind, cond = await answer_of(a, raw_iq(a, bob, "<open xmlns='http://jabber.org/protocol/ibb' sid='conf-ibb-1' block-size='4096'/>"))
    out("IQ ANSWER ibb", kind, cond)
    kind, cond = await answer_of(a, raw_iq(a, bob, "<command xmlns='http://jabber.org/protocol/commands' node='conf-node' action='execute'/>"))
    out("IQ ANSWER command", kind, cond)

    a.send_presence(pstatus=STATUS)
    await until(lambda: STATUS in statuses[b.name] and STATUS in statuses[c.name], "the status broadcast at bob and carol")
    a.send_presence(pto=bob, pstatus=DIRECTED)
    await until(lambda: DIRECTED in statuses[b.name], "the directed presence at bob")
    out("CHANNELS OK")

    out("LOCK NOW")
    await wait_file(os.path.join(slix.ARGS.wait_dir, "locked"))
    kind, cond = await answer_of(a, raw_iq(a, bob, "<data xmlns='http://jabber.org/protocol/ibb' sid='conf-ibb-1' seq='0'>bG9ja2Vk</data>"))
    out("REFUSED iq", kind, cond)
    a.send_presence(pstatus=LOCKED)
    await until(lambda: presence_errors, "an error for the refused broadcast")
    e = presence_errors[0]["error"]
    out("REFUSED presence", e["condition"], e["type"])
    out("UNLOCK NOW")
    await wait_file(os.path.join(slix.ARGS.wait_dir, "unlocked"))
    a.send_presence(pstatus=AFTER)
    await until(lambda: AFTER in statuses[b.name], "the status after the unlock at bob")
    if LOCKED in statuses[b.name]:
        out("BOB SAW LOCKED STATUS")
    out("STATUSES bob", "|".join(statuses[b.name]))
    for cl in (a, b, c):
        await cl.stop()


def main():
    slix.run_script(sc_channels, 3, (("--wait-dir", {"required": True}),))


if __name__ == "__main__":
    main()
