#!/usr/bin/python3
"""slixmpp (1.8.3) message archive (XEP-0313) scenario for the Palisade
conformance tests, built on the client of slix.py.

Usage: slix_mam.py [options] ALICE BOB CAROL   (each jid:password)

alice and bob talk (25 messages and an answer); carol is offline and gets
one message later from offline storage. Each then reads their history
with slixmpp's xep_0313 plugin, paged with xep_0059 forwards and
backwards. Prints machine-checkable lines; exits 1 with "FAIL <reason>".
"""

import asyncio

import slix
from slix import Client, fail, out, until

NS_SID = "urn:xmpp:sid:0"
PLUGINS = ("xep_0004", "xep_0059", "xep_0297", "xep_0313")


def stanza_id(msg, by):
    for el in msg.xml.findall("{%s}stanza-id" % NS_SID):
        if el.get("by") == by:
            return el.get("id")
    return None


async def history(client, reverse=False, with_jid=None):
    """Every archived message as (result id, body, from), oldest first."""
    got = []
    async for res in client["xep_0313"].iterate(with_jid=with_jid, reverse=reverse, rsm={"max": 10}):
        fwd = res["mam_result"]["forwarded"]
        got.append((res["mam_result"]["id"], fwd["stanza"]["body"], fwd["stanza"]["from"].bare,
                    fwd["delay"]["stamp"]))
    if reverse:
        got.reverse()
    return got


async def scenario(accounts):
    a = await Client(accounts[0], plugins=PLUGINS).start()
    b = await Client(accounts[1], plugins=PLUGINS).start()
    received = {}

    def on_msg(msg):
        if msg["body"]:
            received[msg["body"]] = msg
    b.add_event_handler("message", on_msg)

    for i in range(25):
        a.send_message(mto=b.boundjid.full, mbody="m%02d" % i, mtype="chat")
    await until(lambda: "m24" in received, "alice's 25 messages at bob")
    b.send_message(mto=a.boundjid.bare, mbody="thanks", mtype="chat")
    await a.wait_body("thanks")
    sid = stanza_id(received["m00"], b.boundjid.bare)
    out("STANZA-ID", "present" if sid else "missing")

    bh = await history(b)
    out("BOB HISTORY", len(bh), ",".join(x[1] for x in bh[:3]), bh[-1][1])
    if sid != bh[0][0]:
        fail("bob's first result id %s is not the stanza-id %s" % (bh[0][0], sid))
    out("BOB FIRST ID MATCHES")
    if any(x[3] is None for x in bh):
        fail("a result without a delay stamp")
    # Backwards with RSM <before/> (slixmpp's own reverse iterator stops
    # after the first page when the server sends count and first index:
    # its end test assumes forward paging).
    back, before, pages = [bh[-1]], bh[-1][0], 0
    while True:
        r = await b["xep_0313"].retrieve(rsm={"max": 10, "before": before}, timeout=10)
        page = [(m["mam_result"]["id"], m["mam_result"]["forwarded"]["stanza"]["body"]) for m in r["mam"]["results"]]
        back = [(i, body, None, None) for i, body in page] + back
        pages += 1
        if r["mam_fin"].xml.get("complete") == "true" or not page or pages > 5:
            break
        before = page[0][0]
    out("BOB BACKWARD PAGES", pages)
    out("BOB BACKWARDS", len(back), "same" if [x[0] for x in back] == [x[0] for x in bh] else "different")
    ah = await history(a, with_jid=b.boundjid.bare)
    out("ALICE WITH BOB", len(ah), ah[-1][1], ah[-1][2])
    if set(x[0] for x in ah) & set(x[0] for x in bh):
        fail("alice's and bob's archives share ids")
    md = await b["xep_0313"].get_archive_metadata(timeout=10)
    out("METADATA", "start" if md["mam_metadata"]["start"]["id"] == bh[0][0] else "wrong-start",
        "end" if md["mam_metadata"]["end"]["id"] == bh[-1][0] else "wrong-end")

    # carol is offline: the message waits in offline storage with her
    # stanza-id, which is also her archive's id for it.
    a.send_message(mto="carol@" + a.boundjid.domain, mbody="while you were away", mtype="chat")
    await asyncio.sleep(0.5)
    c = Client(accounts[2], plugins=PLUGINS)
    got = {}
    c.add_event_handler("message", lambda m: got.setdefault(m["body"], m) if m["body"] else None)
    await c.start()
    await until(lambda: "while you were away" in got, "carol's offline message")
    csid = stanza_id(got["while you were away"], c.boundjid.bare)
    ch = await history(c)
    out("CAROL HISTORY", len(ch), ch[0][1] if ch else "-", "id matches" if ch and ch[0][0] == csid else "id differs")
    out("MAM OK")
    for x in (a, b, c):
        await x.stop()


def main():
    slix.run_script(scenario, 3, ())


if __name__ == "__main__":
    main()
