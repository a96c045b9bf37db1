#!/usr/bin/python3
"""slixmpp (1.8.3) federation steps for the Palisade conformance tests, built
on the client of slix.py: one user on one server, talking to users on other
domains over server-to-server streams.

Usage: slix_fed.py --port P --ca CA [steps] JID:PASSWORD

Steps, in this order (each optional):
  --carbons             enable carbons (XEP-0280) and print the carbons that
                        arrive
  --subscribe JID       ask JID for a subscription (and accept theirs: the
                        client authorizes and subscribes back automatically)
  --wait-presence JID   wait until the roster has JID at subscription=both
                        and JID's available presence arrived
  --send JID=BODY       send a chat message (repeatable)
  --expect BODY         wait until a message with that body arrives (repeatable)
  --expect-error COND   wait until a message error with that condition (any
                        condition: "any") arrives
  --mam-with JID        query the archive (XEP-0313) with JID; one MAM line each
  --linger SECONDS      stay online that long, then
  --expect-carbon DIR:BODY
                        wait until a carbon (DIR sent or received) of a
                        message with that body arrives (repeatable)
  --absent BODY         fail if a message with that body arrived (repeatable)

Prints "LOGIN OK ...", "PRESENCE <user> <from> available",
"SUBSCRIPTION <user> <jid> <state>", "BOTH <jid>", "SENT <to> <body>",
"RECEIVED <user> <from> <body>", "STANZA ERROR <user> <from> <condition> <text>",
"MAM <from> <to> <body>", "MAM COUNT <n>", "CARBONS ENABLED <user>",
"CARBON <sent|received> <user> <from> <to> <body>", "ABSENT OK", "DONE"; exits 1 with
"FAIL <reason>".
"""

import asyncio

import slix
from slix import Client, fail, out, until
from slixmpp.xmlstream import JID

PLUGINS = ("xep_0004", "xep_0059", "xep_0297", "xep_0313", "xep_0280")

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def condition(stanza):
    """The defined condition of an error stanza. slixmpp 1.8.3 knows only
    RFC 3920's conditions (msg["error"]["condition"] is empty for
    policy-violation): read the element."""
    err = stanza.xml.find("{jabber:client}error")
    for el in err if err is not None else []:
        if el.tag.startswith("{%s}" % STANZAS) and el.tag != "{%s}text" % STANZAS:
            return el.tag.split("}", 1)[1]
    return "(none)"


EXTRA = (
    ("--carbons", {"action": "store_true"}),
    ("--subscribe", {}),
    ("--wait-presence", {}),
    ("--send", {"action": "append", "default": []}),
    ("--expect", {"action": "append", "default": []}),
    ("--expect-error", {}),
    ("--mam-with", {}),
    ("--linger", {"type": float, "default": 0}),
    ("--expect-carbon", {"action": "append", "default": []}),
    ("--absent", {"action": "append", "default": []}),
)


async def scenario(accounts):
    args = slix.ARGS
    c = Client(accounts[0], plugins=PLUGINS)
    c.auto_authorize = True
    c.auto_subscribe = True
    seen = set()
    errors = []

    def on_avail(pres):
        frm = pres["from"].bare
        if frm != c.boundjid.bare and frm not in seen:
            seen.add(frm)
            out("PRESENCE", c.name, frm, "available")

    def on_roster(_):
        for j in c.client_roster:
            if j != c.boundjid.bare:
                st = c.client_roster[j]["subscription"]
                key = (j, st)
                if key not in reported:
                    reported.add(key)
                    out("SUBSCRIPTION", c.name, j, st)

    def on_msg_error(msg):
        if msg["type"] == "error":
            cond = condition(msg)
            errors.append(cond)
            out("STANZA ERROR", c.name, msg["from"].bare, cond, msg["error"]["text"])

    def on_pres_error(pres):
        out("PRESENCE ERROR", c.name, pres["from"].bare, condition(pres))

    carbons = set()

    def on_carbon(direction):
        def handler(msg):
            fwd = msg["carbon_" + direction]
            if fwd["body"]:
                carbons.add((direction, fwd["body"]))
                out("CARBON", direction, c.name, fwd["from"].bare, fwd["to"].bare, fwd["body"])
        return handler

    reported = set()
    c.add_event_handler("presence_available", on_avail)
    c.add_event_handler("roster_update", on_roster)
    c.add_event_handler("changed_subscription", on_roster)
    c.add_event_handler("message", on_msg_error)
    c.add_event_handler("presence_error", on_pres_error)
    c.add_event_handler("carbon_sent", on_carbon("sent"))
    c.add_event_handler("carbon_received", on_carbon("received"))
    await c.start()

    if args.carbons:
        try:
            await c["xep_0280"].enable(timeout=10)
        except Exception as e:
            fail("enabling carbons: %r" % (e,))
        out("CARBONS ENABLED", c.name)

    if args.subscribe:
        c.send_presence_subscription(pto=args.subscribe)
        out("SUBSCRIBE", args.subscribe)

    if args.wait_presence:
        other = JID(args.wait_presence).bare

        def both():
            on_roster(None)
            return other in c.client_roster and c.client_roster[other]["subscription"] == "both"
        await until(lambda: both() and other in seen,
                    "subscription=both with %s and its presence" % other)
        out("BOTH", other)

    for spec in args.send:
        to, body = spec.split("=", 1)
        c.send_message(mto=to, mbody=body, mtype="chat")
        out("SENT", to, body)

    for body in args.expect:
        await until(lambda: body in c.bodies(), "a message %r" % body)

    if args.expect_error == "any":
        await until(lambda: errors, "a message error")
    elif args.expect_error:
        await until(lambda: args.expect_error in errors, "a message error %s" % args.expect_error)

    for spec in args.expect_carbon:
        direction, body = spec.split(":", 1)
        await until(lambda: (direction, body) in carbons, "a %s carbon of %r" % (direction, body))

    if args.mam_with:
        n = 0
        async for res in c["xep_0313"].iterate(with_jid=JID(args.mam_with), rsm={"max": 20}):
            fwd = res["mam_result"]["forwarded"]["stanza"]
            if fwd["body"]:
                out("MAM", fwd["from"].bare, fwd["to"].bare, fwd["body"])
                n += 1
        out("MAM COUNT", n)

    if args.linger:
        await asyncio.sleep(args.linger)
    for body in args.absent:
        if body in c.bodies():
            fail("message %r arrived" % body)
    if args.absent:
        out("ABSENT OK")
    await c.stop()


def main():
    slix.run_script(scenario, 1, EXTRA)


if __name__ == "__main__":
    main()
