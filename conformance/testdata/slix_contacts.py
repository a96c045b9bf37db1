#!/usr/bin/python3
"""slixmpp (1.8.3) contact-policy scenario for the Palisade conformance
tests, built on the client of slix.py.

Usage: slix_contacts.py [options] STRANGER PROTECTED CONTACT   (jid:password)

PROTECTED (contacts = "roster", subscriptions = "none" on the server) asks
CONTACT for a subscription through the real roster, which CONTACT
approves: CONTACT is then on PROTECTED's roster. CONTACT sends a message
and a disco#info IQ to PROTECTED's full JID; STRANGER sends the same, and
the same to --missing (an account that does not exist), and a
subscription request. Prints:
  CONTACT MESSAGE RECEIVED             PROTECTED got CONTACT's message
  CONTACT IQ RESULT                    CONTACT's IQ was answered
  REFUSED <what> <addressee> <xml>     the error STRANGER received, its id
                                       and the addressee taken out
  STRANGER SUBSCRIBE RECEIVED          (a failure) PROTECTED got the request
  STRANGER MESSAGE RECEIVED            (a failure) PROTECTED got the message
  PROTECTED SAW NOTHING FROM STRANGER
and exits 1 with "FAIL <reason>" when something is missing.
"""

import asyncio
import re

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import tostring

import slix
from slix import Client, fail, out, until

NS_INFO = "http://jabber.org/protocol/disco#info"


def normalised(xml, addressee):
    """The received stanza's XML without its id and with the addressee's
    bare JID replaced, so refusals from two addressees compare."""
    s = tostring(xml)
    s = re.sub(r' id="[^"]*"', "", s)
    return s.replace(addressee, "ADDRESSEE")


async def ping_server(c):
    """Round trip to the server: everything c sent before is handled."""
    await c["xep_0199"].ping(jid=c.boundjid.domain, timeout=slix.ARGS.step_timeout)


async def scenario(accounts):
    stranger = Client(accounts[0])
    protected = Client(accounts[1])
    contact = Client(accounts[2])
    contact.auto_authorize = True
    contact.auto_subscribe = False
    protected.auto_authorize = False
    protected.auto_subscribe = False
    seen = []

    def on_subscribe(p):
        if p["from"].bare == stranger.boundjid.bare:
            seen.append("subscribe")
            out("STRANGER SUBSCRIBE RECEIVED")
    protected.add_event_handler("presence_subscribe", on_subscribe)

    errors = asyncio.Queue()

    def on_error_message(m):
        if m["type"] == "error":
            errors.put_nowait(m)
    stranger.add_event_handler("message", on_error_message)

    for c in (stranger, protected, contact):
        await c.start()

    # CONTACT becomes a contact: PROTECTED asks, CONTACT approves.
    protected.send_presence_subscription(pto=contact.boundjid.bare)

    def sub(c, other):
        r = c.client_roster
        return r[other.boundjid.bare]["subscription"] if other.boundjid.bare in r else "none"
    await until(lambda: sub(protected, contact) in ("to", "both"), "the contact's approval")
    out("SUBSCRIBED")

    contact.send_message(mto=protected.boundjid.bare, mbody="from a contact", mtype="chat")
    await protected.wait_body("from a contact")
    out("CONTACT MESSAGE RECEIVED")
    try:
        await contact["xep_0030"].get_info(jid=protected.boundjid.full, timeout=slix.ARGS.step_timeout)
        out("CONTACT IQ RESULT")
    except (IqError, IqTimeout) as e:
        fail("the contact's disco#info: %r" % e)

    missing = slix.ARGS.missing
    for addressee in (protected.boundjid.bare, missing):
        stranger.send_message(mto=addressee, mbody="hello from a stranger", mtype="chat")
        try:
            m = await asyncio.wait_for(errors.get(), slix.ARGS.step_timeout)
        except asyncio.TimeoutError:
            fail("no error for the message to " + addressee)
        out("REFUSED message", addressee, normalised(m.xml, addressee))
    for addressee in (protected.boundjid.full, missing + "/desk"):
        try:
            await stranger["xep_0030"].get_info(jid=addressee, timeout=slix.ARGS.step_timeout)
            fail("disco#info to %s was answered" % addressee)
        except IqError as e:
            out("REFUSED iq", addressee, normalised(e.iq.xml, addressee))
        except IqTimeout:
            fail("no answer to the disco#info to " + addressee)
    stranger.send_presence_subscription(pto=protected.boundjid.bare)
    await ping_server(stranger)
    # Anything routed to PROTECTED before the stranger's ping was answered
    # is in its stream before the answer to its own ping.
    await ping_server(protected)
    if any(f.bare == stranger.boundjid.bare for f, _, _ in protected.messages):
        seen.append("message")
        out("STRANGER MESSAGE RECEIVED")
    if not seen:
        out("PROTECTED SAW NOTHING FROM STRANGER")
    for c in (stranger, protected, contact):
        await c.stop()


def main():
    slix.run_script(scenario, 3, (
        ("--missing", {"required": True}),
    ))


if __name__ == "__main__":
    main()
