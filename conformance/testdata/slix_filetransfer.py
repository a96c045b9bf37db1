#!/usr/bin/python3
"""slixmpp (1.8.3) file transfer scenario for the Palisade conformance tests:
XEP-0096 SI file transfer over XEP-0047 in-band bytestreams, built on the
client of slix.py.

Usage: slix_filetransfer.py [options] SENDER RECEIVER   (each jid:password)

The receiver accepts every offer; the sender offers a file of --size bytes
to the receiver's full JID, opens the IBB stream the receiver chose, sends
the file and closes. With --subscribe the two first become mutual contacts
through the real roster. Prints:
  OFFER ACCEPTED <method>            the receiver's SI answer
  OFFER REFUSED <condition> <text>   an error answered the offer
  SENT <sha256> <bytes>              the sender sent the file and closed
  RECEIVED <sha256> <bytes>          the receiver got the whole stream
and exits 1 with "FAIL <reason>" when something is missing.
"""

import asyncio
import hashlib
import os

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import CoroutineCallback
from slixmpp.xmlstream.matcher import StanzaPath

import slix
from slix import Client, fail, out, until

NS_IBB = "http://jabber.org/protocol/ibb"
NS_SOCKS5 = "http://jabber.org/protocol/bytestreams"
PLUGINS = ("xep_0047", "xep_0095", "xep_0096")


def condition(iq):
    """The defined condition of an error iq, read from the XML: slixmpp
    1.8.3 knows only RFC 3920's conditions (not policy-violation)."""
    err = iq.xml.find("{jabber:client}error")
    for c in (err if err is not None else []):
        ns, _, name = c.tag[1:].partition("}")
        if ns == "urn:ietf:params:xml:ns:xmpp-stanzas" and name != "text":
            return name
    return "none"


async def scenario(accounts):
    a = Client(accounts[0], plugins=PLUGINS)
    b = Client(accounts[1], plugins=PLUGINS)
    for c in (a, b):
        c.auto_authorize = True
        c.auto_subscribe = True
        # slixmpp 1.8.3 registers its coroutine SI handler as a plain
        # callback, so that offers are never answered: register it right.
        c.remove_handler("SI Request")
        c.register_handler(CoroutineCallback("SI Request", StanzaPath("iq@type=set/si"),
                                             c["xep_0095"]._handle_request))
    got = asyncio.get_event_loop().create_future()

    async def on_si_request(iq):
        sid = iq["si"]["id"]
        f = iq["si"]["file"]
        out("OFFER RECEIVED", f["name"], f["size"])
        await b["xep_0095"].accept(iq["from"], sid, ifrom=iq["to"])

    async def on_stream(stream):
        try:
            data = await stream.gather(timeout=slix.ARGS.step_timeout * 4)
        except Exception as e:  # noqa: BLE001 - reported as the failure
            got.set_exception(e)
            return
        if not got.done():
            got.set_result(data)

    b.add_event_handler("si_request", on_si_request)
    b.add_event_handler("ibb_stream_start", on_stream)
    await a.start()
    await b.start()

    if slix.ARGS.subscribe:
        a.send_presence_subscription(pto=b.boundjid.bare)

        def sub(c, other):
            r = c.client_roster
            return r[other.boundjid.bare]["subscription"] if other.boundjid.bare in r else "none"
        await until(lambda: sub(a, b) == "both" and sub(b, a) == "both", "subscription=both on both rosters")
        out("SUBSCRIBED")

    data = os.urandom(slix.ARGS.size)
    digest = hashlib.sha256(data).hexdigest()
    sid = "ft-" + os.urandom(6).hex()
    try:
        res = await a["xep_0096"].request_file_transfer(
            b.boundjid.full, sid=sid, name="report.bin", size=len(data), desc="conformance",
            hash=hashlib.md5(data).hexdigest(), timeout=slix.ARGS.step_timeout,
            # Both methods, as Smack offers them. slixmpp 1.8.3's default
            # (the method names as strings) fails in its own form code.
            methods=[{"value": NS_SOCKS5}, {"value": NS_IBB}])
    except IqError as e:
        out("OFFER REFUSED", condition(e.iq), e.iq["error"]["text"])
        for c in (a, b):
            await c.stop()
        return
    except IqTimeout:
        fail("no answer to the SI offer")
    method = res["si"]["feature_neg"]["form"]["values"].get("stream-method")
    out("OFFER ACCEPTED", method)
    if method != NS_IBB:
        fail("the receiver chose %r, not in-band bytestreams" % method)

    stream = await a["xep_0047"].open_stream(b.boundjid.full, sid=sid, timeout=slix.ARGS.step_timeout)
    await stream.sendall(data, timeout=slix.ARGS.step_timeout)
    await stream.close(timeout=slix.ARGS.step_timeout)
    out("SENT", digest, len(data))
    try:
        received = await asyncio.wait_for(got, slix.ARGS.step_timeout * 4)
    except asyncio.TimeoutError:
        fail("the receiver's stream did not end")
    out("RECEIVED", hashlib.sha256(received).hexdigest(), len(received))
    for c in (a, b):
        await c.stop()


def main():
    slix.run_script(scenario, 2, (
        ("--size", {"type": int, "default": 50000}),
        ("--subscribe", {"action": "store_true"}),
    ))


if __name__ == "__main__":
    main()
