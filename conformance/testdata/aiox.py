#!/usr/bin/python3
"""aioxmpp (0.13.3) scenarios for the Palisade conformance tests.

Usage: aiox.py [options] SCENARIO JID:PASSWORD

Prints machine-checkable lines and exits 0 when the client saw what it
expected, 1 otherwise ("FAIL <reason>"). Run with Debian's /usr/bin/python3:
python3-aioxmpp is installed for it only.

Scenarios:
  login     log in over STARTTLS and print "LOGIN OK <full jid>".
  exchange  log in, fetch the roster (RosterClient and a plain roster get),
            add --add-contact to the roster, print "READY", send --body to
            --to, wait for a chat message from --to and print it.
"""

import argparse
import asyncio
import logging
import sys

import OpenSSL.SSL
import aioxmpp
import aioxmpp.dispatcher
import aioxmpp.roster.xso
import aioxmpp.security_layer
import aiosasl

ARGS = None


def out(*parts):
    print(*parts, flush=True)


def fail(reason):
    out("FAIL", reason)
    sys.exit(1)


def ssl_context():
    # aioxmpp's default context plus the test server's self-signed
    # certificate as a trusted CA; the PKIX verifier still checks it and the
    # host name (the JID's domain).
    ctx = aioxmpp.security_layer.default_ssl_context()
    ctx.load_verify_locations(ARGS.ca)
    return ctx


def make_client(account):
    jid, password = account.rsplit(":", 1)
    jid = aioxmpp.JID.fromstr(jid)
    security = aioxmpp.make_security_layer(password, ssl_context_factory=ssl_context)
    client = aioxmpp.PresenceManagedClient(
        jid, security,
        # STARTTLS on the test port, not SRV records.
        override_peer=[(ARGS.host, ARGS.port, aioxmpp.connector.STARTTLSConnector())],
    )
    client.presence = aioxmpp.PresenceState(True)
    return client


def roster_line(prefix, jid, item):
    # RosterClient items have a set of str, roster.xso items Group XSOs.
    groups = sorted(getattr(g, "name", g) for g in (item.groups or ()))
    groups = ",".join(groups) if groups else "-"
    out(prefix, str(jid), item.subscription, item.name or "-", groups)


async def sc_login(account):
    client = make_client(account)
    async with client.connected() as stream:
        out("LOGIN OK", str(client.local_jid))


async def sc_exchange(account):
    client = make_client(account)
    roster = client.summon(aioxmpp.RosterClient)
    initial = asyncio.get_event_loop().create_future()
    roster.on_initial_roster_received.connect(
        lambda: initial.done() or initial.set_result(True))
    received = asyncio.Queue()

    def on_message(msg):
        if msg.type_ == aioxmpp.MessageType.ERROR:
            out("MESSAGE ERROR", str(msg.from_), repr(msg.error))
            return
        body = msg.body.any() if msg.body else None
        if body is None:
            return
        out("RECEIVED", str(msg.from_.bare()), body)
        received.put_nowait((msg.from_.bare(), body))

    dispatcher = client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher)
    dispatcher.register_callback(aioxmpp.MessageType.CHAT, None, on_message)

    async with client.connected() as stream:
        out("LOGIN OK", str(client.local_jid))
        try:
            await asyncio.wait_for(initial, ARGS.step_timeout)
        except asyncio.TimeoutError:
            fail("no initial roster")
        out("ROSTER RECEIVED", len(roster.items))
        for jid, item in roster.items.items():
            roster_line("ROSTER ITEM", jid, item)

        if ARGS.add_contact:
            contact = aioxmpp.JID.fromstr(ARGS.add_contact)
            await asyncio.wait_for(
                roster.set_entry(contact, name="Added by aioxmpp", add_to_groups={"Conformance"}),
                ARGS.step_timeout)
            out("ROSTER SET OK", str(contact))
            # The server's stored roster, fetched afresh with a plain get.
            iq = aioxmpp.IQ(type_=aioxmpp.IQType.GET, payload=aioxmpp.roster.xso.Query())
            res = await asyncio.wait_for(client.send(iq), ARGS.step_timeout)
            for item in res.items:
                roster_line("SERVER ROSTER", item.jid, item)

        out("READY", str(client.local_jid))
        peer = aioxmpp.JID.fromstr(ARGS.to)
        msg = aioxmpp.Message(to=peer, type_=aioxmpp.MessageType.CHAT)
        msg.body[None] = ARGS.body
        await client.send(msg)
        out("SENT", ARGS.body)

        async def wait_reply():
            while True:
                frm, body = await received.get()
                if frm == peer.bare():
                    return body
        try:
            await asyncio.wait_for(wait_reply(), ARGS.step_timeout)
        except asyncio.TimeoutError:
            fail("no message from " + str(peer))
        out("EXCHANGE OK")


SCENARIOS = {"login": sc_login, "exchange": sc_exchange}


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--to")
    p.add_argument("--body")
    p.add_argument("--add-contact")
    p.add_argument("--step-timeout", type=float, default=15)
    p.add_argument("--timeout", type=float, default=40)
    p.add_argument("--debug", action="store_true")
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("account")
    ARGS = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if ARGS.debug else logging.WARNING,
                        format="%(levelname)s %(name)s %(message)s", stream=sys.stderr)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(SCENARIOS[ARGS.scenario](ARGS.account), ARGS.timeout))
    except asyncio.TimeoutError:
        fail("scenario timed out")
    except aiosasl.AuthenticationFailure as e:
        # aioxmpp asks for the password again after a SASL <failure/>; the
        # static password provider declines, so the text is "aborted by
        # user". The server's condition is in its audit log.
        out("AUTH FAILED", repr(e))
        sys.exit(1)
    except aioxmpp.errors.SASLUnavailable as e:
        # Includes a SASL <failure/> on every offered mechanism.
        out("AUTH FAILED", repr(e))
        sys.exit(1)
    except aioxmpp.errors.SecurityNegotiationFailure as e:
        out("SECURITY FAILED", repr(e))
        sys.exit(1)
    except aioxmpp.errors.StreamError as e:
        out("STREAM ERROR", repr(e))
        sys.exit(1)
    out("DONE")


if __name__ == "__main__":
    main()
