#!/usr/bin/python3
"""slixmpp (1.8.3) scenarios for the Palisade conformance tests.

Usage: slix.py [options] SCENARIO ACCOUNT...   where ACCOUNT is jid:password
(a resource may be given: alice@localhost/r1:password).

Every scenario prints machine-checkable lines and exits 0 when the client saw
what it expected, 1 otherwise ("FAIL <reason>"). Auth failures print
"AUTH FAILED <condition>".

Run with Debian's /usr/bin/python3: slixmpp is installed for it only.
"""

import argparse
import asyncio
import logging
import sys

import slixmpp
from slixmpp.xmlstream import JID

ARGS = None


def out(*parts):
    print(*parts, flush=True)


class AuthFailed(Exception):
    pass


class Client(slixmpp.ClientXMPP):
    """A client that records what it receives."""

    def __init__(self, account, plugins=(), mech=None):
        jid, password = account.rsplit(":", 1)
        super().__init__(jid, password)
        self.name = JID(jid).user + ("/" + JID(jid).resource if JID(jid).resource else "")
        self.ssl_context.load_verify_locations(ARGS.ca)
        if mech:
            # slixmpp 1.8.3 offers "y" (client supports channel binding) on a
            # bare SCRAM mechanism, which a server advertising -PLUS must
            # refuse (RFC 5802); it reaches the bare mechanism only after its
            # tls-unique -PLUS attempt is rejected. So allow both and check
            # which one was used.
            mechs = {mech}
            if mech.startswith("SCRAM-") and not mech.endswith("-PLUS"):
                mechs.add(mech + "-PLUS")
            self["feature_mechanisms"].use_mechs = mechs
        for p in ("xep_0030", "xep_0199", "xep_0203") + tuple(plugins):
            self.register_plugin(p)
        self.messages = []
        self.msg_event = asyncio.Event()
        self.last_auth_condition = None
        self.used_mech = None
        self.session = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self._on_start)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("no_auth", self._on_no_auth)
        self.add_event_handler("failed_all_auth", self._on_no_auth)
        self.add_event_handler("auth_success", self._on_auth_success)
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("stream_error", self._on_stream_error)

    def _on_auth_success(self, _):
        self.used_mech = self["feature_mechanisms"].mech.name

    def _on_failed_auth(self, stanza):
        self.last_auth_condition = stanza["condition"]
        out("AUTH FAILURE", self["feature_mechanisms"].mech.name, stanza["condition"], stanza["text"])

    def _on_no_auth(self, _):
        if not self.session.done():
            self.session.set_exception(AuthFailed(self.last_auth_condition or "unknown"))

    def _on_stream_error(self, err):
        out("STREAM ERROR", self.name, err["condition"])

    async def _on_start(self, _):
        self.send_presence()
        try:
            await self.get_roster(timeout=10)
        except Exception as e:  # roster may be missing; login still worked
            out("ROSTER FETCH FAILED", self.name, repr(e))
        if not self.session.done():
            self.session.set_result(True)

    def _on_message(self, msg):
        if msg["type"] == "error":
            out("MESSAGE ERROR", self.name, msg["from"].bare, msg["error"]["condition"])
            return
        if not msg["body"]:
            return
        delay = msg["delay"]["stamp"] if msg.xml.find("{urn:xmpp:delay}delay") is not None else None
        self.messages.append((msg["from"], msg["body"], delay))
        line = ["RECEIVED", self.name, msg["from"].bare, msg["body"]]
        if delay is not None:
            line += ["DELAY", delay.isoformat()]
        out(*line)
        self.msg_event.set()

    async def start(self):
        self.connect(address=(ARGS.host, ARGS.port), use_ssl=ARGS.direct_tls,
                     force_starttls=not ARGS.direct_tls)
        await asyncio.wait_for(asyncio.shield(self.session), ARGS.step_timeout)
        out("LOGIN OK", self.name, self.used_mech, self.boundjid.full)
        return self

    async def wait_body(self, body, timeout=None):
        async def loop():
            while not any(b == body for _, b, _ in self.messages):
                self.msg_event.clear()
                await self.msg_event.wait()
        await asyncio.wait_for(loop(), timeout or ARGS.step_timeout)

    def bodies(self):
        return [b for _, b, _ in self.messages]

    async def stop(self):
        if self.transport is not None:
            self.disconnect()
            try:
                await asyncio.wait_for(self.disconnected, 5)
            except asyncio.TimeoutError:
                pass


def fail(reason):
    out("FAIL", reason)
    sys.exit(1)


async def until(pred, what, timeout=None):
    async def loop():
        while not pred():
            await asyncio.sleep(0.1)
    try:
        await asyncio.wait_for(loop(), timeout or ARGS.step_timeout)
    except asyncio.TimeoutError:
        fail("timeout waiting for " + what)


# --- scenarios --------------------------------------------------------------

async def sc_login(accounts):
    c = Client(accounts[0], mech=ARGS.mech)
    try:
        await c.start()
    except AuthFailed as e:
        out("AUTH FAILED", str(e))
        sys.exit(1)
    if ARGS.mech and c.used_mech != ARGS.mech:
        fail("used mechanism %s, wanted %s" % (c.used_mech, ARGS.mech))
    await c.stop()


async def sc_chat(accounts):
    """Two accounts send each other a message."""
    a = await Client(accounts[0], mech=ARGS.mech).start()
    b = await Client(accounts[1], mech=ARGS.mech).start()
    a.send_message(mto=b.boundjid.bare, mbody="hello from a", mtype="chat")
    b.send_message(mto=a.boundjid.bare, mbody="hello from b", mtype="chat")
    try:
        await b.wait_body("hello from a")
        await a.wait_body("hello from b")
    except asyncio.TimeoutError:
        fail("messages not received: a=%r b=%r" % (a.bodies(), b.bodies()))
    out("CHAT OK")
    await a.stop()
    await b.stop()


async def sc_listen(accounts):
    """Log in, print READY, print what arrives; answer the first message
    with --reply-body; exit after --count messages."""
    c = await Client(accounts[0]).start()
    out("READY", c.boundjid.full)
    try:
        await until(lambda: len(c.messages) >= 1, "a message")
        if ARGS.reply_body:
            c.send_message(mto=ARGS.reply_to or c.messages[0][0], mbody=ARGS.reply_body, mtype="chat")
            out("SENT", ARGS.reply_body)
        await until(lambda: len(c.messages) >= ARGS.count, "%d messages" % ARGS.count)
        await asyncio.sleep(0.5)
    finally:
        await c.stop()


async def sc_send(accounts):
    c = await Client(accounts[0]).start()
    c.send_message(mto=ARGS.to, mbody=ARGS.body, mtype="chat")
    out("SENT", ARGS.body)
    await asyncio.sleep(0.5)
    await c.stop()


async def sc_roster(accounts):
    """a subscribes to b; both accept automatically and subscribe back; both
    rosters end at subscription=both and each sees the other available."""
    a = Client(accounts[0])
    b = Client(accounts[1])
    seen = {}
    for c in (a, b):
        c.auto_authorize = True
        c.auto_subscribe = True

        def on_avail(pres, c=c):
            if pres["from"].bare != c.boundjid.bare:
                if (c.name, pres["from"].bare) not in seen:
                    out("PRESENCE", c.name, pres["from"].bare, "available")
                seen[(c.name, pres["from"].bare)] = True
        c.add_event_handler("presence_available", on_avail)
    await a.start()
    await b.start()
    a.send_presence_subscription(pto=b.boundjid.bare)

    def sub(c, other):
        return c.client_roster[other.boundjid.bare]["subscription"] if other.boundjid.bare in c.client_roster else "none"
    await until(lambda: sub(a, b) == "both" and sub(b, a) == "both",
                "subscription=both on both rosters")
    out("ROSTER", a.name, b.boundjid.bare, sub(a, b))
    out("ROSTER", b.name, a.boundjid.bare, sub(b, a))
    await until(lambda: (a.name, b.boundjid.bare) in seen and (b.name, a.boundjid.bare) in seen,
                "available presence both ways")
    # The server's stored roster, fetched afresh without a version (so the
    # answer is the full roster, not "unchanged").
    for c, other in ((a, b), (b, a)):
        iq = c.Iq()
        iq["type"] = "get"
        iq.enable("roster")
        res = await iq.send(timeout=10)
        sub = "missing"
        for item in res.xml.iter("{jabber:iq:roster}item"):
            if JID(item.get("jid")).bare == other.boundjid.bare:
                sub = item.get("subscription", "none")
        out("SERVER ROSTER", c.name, other.boundjid.bare, sub)
    out("ROSTER OK")
    await a.stop()
    await b.stop()


async def sc_shared(accounts):
    """a and b log in without asking for anything; the shared roster gives
    each the other with subscription both, and each sees the other
    available."""
    a = Client(accounts[0])
    b = Client(accounts[1])
    seen = {}
    for c in (a, b):
        def on_avail(pres, c=c):
            if pres["from"].bare != c.boundjid.bare:
                seen[(c.name, pres["from"].bare)] = True
        c.add_event_handler("presence_available", on_avail)
    await a.start()
    await b.start()

    def sub(c, other):
        return c.client_roster[other.boundjid.bare]["subscription"] if other.boundjid.bare in c.client_roster else "none"
    await until(lambda: sub(a, b) == "both" and sub(b, a) == "both",
                "shared items with subscription=both on both rosters")
    await until(lambda: (a.name, b.boundjid.bare) in seen and (b.name, a.boundjid.bare) in seen,
                "available presence both ways")
    for c, other in ((a, b), (b, a)):
        out("SHARED", c.name, other.boundjid.bare, sub(c, other), ",".join(c.client_roster[other.boundjid.bare]["groups"]))
    out("SHARED OK")
    await a.stop()
    await b.stop()


async def sc_offline(accounts):
    """a sends to b while b is offline; b logs in and gets it with a delay."""
    a = await Client(accounts[0]).start()
    a.send_message(mto=JID(accounts[1].rsplit(":", 1)[0]).bare, mbody="offline hello", mtype="chat")
    out("SENT", "offline hello")
    await asyncio.sleep(0.5)
    await a.stop()
    b = await Client(accounts[1]).start()
    await until(lambda: "offline hello" in b.bodies(), "the offline message")
    delay = [d for _, body, d in b.messages if body == "offline hello"][0]
    if delay is None:
        fail("offline message without a delay stamp")
    out("OFFLINE OK")
    await b.stop()


async def sc_carbons(accounts):
    """accounts: alice/r1, alice/r2, bob. r1 and r2 enable carbons; r2 sees a
    carbon of what r1 sends and of what bob sends to r1."""
    a1 = Client(accounts[0], plugins=("xep_0280",))
    a2 = Client(accounts[1], plugins=("xep_0280",))
    b = Client(accounts[2])
    carbons = []

    def on_sent(msg):
        body = msg["carbon_sent"]["body"]
        out("CARBON SENT", body)
        carbons.append(("sent", body))

    def on_received(msg):
        body = msg["carbon_received"]["body"]
        out("CARBON RECEIVED", body)
        carbons.append(("received", body))
    a2.add_event_handler("carbon_sent", on_sent)
    a2.add_event_handler("carbon_received", on_received)
    for c in (a1, a2, b):
        await c.start()
    for c in (a1, a2):
        try:
            await c["xep_0280"].enable(timeout=10)
            out("CARBONS ENABLED", c.name)
        except Exception as e:
            fail("enabling carbons on %s: %r" % (c.name, e))
    a1.send_message(mto=b.boundjid.bare, mbody="carbon out", mtype="chat")
    await b.wait_body("carbon out")
    b.send_message(mto=a1.boundjid.full, mbody="carbon in", mtype="chat")
    await a1.wait_body("carbon in")
    await until(lambda: ("sent", "carbon out") in carbons and ("received", "carbon in") in carbons,
                "both carbons on the second resource")
    out("CARBONS OK")
    for c in (a1, a2, b):
        await c.stop()


async def sc_block(accounts):
    """accounts: alice, bob, carol. bob blocks alice; alice's message must not
    reach bob, carol's (sent after it) must."""
    a = await Client(accounts[0]).start()
    b = await Client(accounts[1], plugins=("xep_0191",)).start()
    c = await Client(accounts[2]).start()
    try:
        await b["xep_0191"].block(JID(a.boundjid.bare), timeout=10)
        out("BLOCK OK")
        iq = await b["xep_0191"].get_blocked(timeout=10)
        out("BLOCKLIST", " ".join(sorted(str(j) for j in iq["blocklist"]["items"])))
    except Exception as e:
        fail("blocking: %r" % (e,))
    a.send_message(mto=b.boundjid.bare, mbody="from blocked", mtype="chat")
    await asyncio.sleep(0.3)
    c.send_message(mto=b.boundjid.bare, mbody="control", mtype="chat")
    await b.wait_body("control")
    await asyncio.sleep(1.0)
    if "from blocked" in b.bodies():
        fail("the blocked contact's message was delivered")
    out("BLOCKED NOT DELIVERED")
    for x in (a, b, c):
        await x.stop()


async def sc_resume(accounts):
    """a enables XEP-0198; b sends 5 messages; a's TCP connection is aborted;
    b sends 10 more; a reconnects and resumes; b sends 5 more. a must get all
    20 exactly once."""
    a = Client(accounts[0], plugins=("xep_0198",))
    a["xep_0198"].window = 1
    b = await Client(accounts[1]).start()
    enabled = asyncio.get_event_loop().create_future()
    resumed = asyncio.get_event_loop().create_future()
    a.add_event_handler("sm_enabled", lambda s: enabled.done() or enabled.set_result(s))
    a.add_event_handler("session_resumed", lambda s: resumed.done() or resumed.set_result(s))
    a.add_event_handler("sm_failed", lambda s: out("SM FAILED", s["condition"] if "condition" in s.interfaces else s))
    await a.start()
    try:
        sm = await asyncio.wait_for(enabled, ARGS.step_timeout)
    except asyncio.TimeoutError:
        fail("stream management not enabled")
    out("SM ENABLED", "resume=" + str(sm["resume"]), "id=" + str(sm["id"]))
    full = a.boundjid.full

    def nums():
        return [b_ for _, b_, _ in a.messages]

    for i in range(1, 6):
        b.send_message(mto=full, mbody="m%d" % i, mtype="chat")
    await until(lambda: len(a.messages) >= 5, "first 5 messages")
    a["xep_0198"].send_ack()
    await asyncio.sleep(0.2)
    # Drop the TCP connection without a closing stream or TLS close_notify.
    a.transport.abort()
    await asyncio.wait_for(a.disconnected, 5)
    out("ABORTED")
    for i in range(6, 16):
        b.send_message(mto=full, mbody="m%d" % i, mtype="chat")
    await asyncio.sleep(1.0)
    a.connect(address=(ARGS.host, ARGS.port), use_ssl=ARGS.direct_tls,
              force_starttls=not ARGS.direct_tls)
    try:
        await asyncio.wait_for(resumed, ARGS.step_timeout)
    except asyncio.TimeoutError:
        fail("stream not resumed")
    out("RESUMED", a.boundjid.full)
    for i in range(16, 21):
        b.send_message(mto=full, mbody="m%d" % i, mtype="chat")
    want = ["m%d" % i for i in range(1, 21)]
    try:
        await until(lambda: all(w in nums() for w in want), "all 20 messages", 15)
    finally:
        got = nums()
        missing = [w for w in want if w not in got]
        dups = sorted({w for w in got if got.count(w) > 1})
        out("COUNT", len(set(got) & set(want)), "MISSING", ",".join(missing) or "-",
            "DUPLICATES", ",".join(dups) or "-")
    await asyncio.sleep(0.5)
    got = nums()
    dups = sorted({w for w in got if got.count(w) > 1})
    if dups:
        fail("duplicates: " + ",".join(dups))
    out("RESUME OK")
    await b.stop()
    await a.stop()


async def sc_revoke(accounts):
    """Log in with XEP-0198 resumption, wait until the server ends the
    session, then (once --wait-file exists) reconnect and try to resume."""
    import os
    a = Client(accounts[0], plugins=("xep_0198",))
    enabled = asyncio.get_event_loop().create_future()
    outcome = asyncio.get_event_loop().create_future()
    a.add_event_handler("sm_enabled", lambda s: enabled.done() or enabled.set_result(s))
    a.add_event_handler("session_resumed", lambda s: outcome.done() or outcome.set_result("RESUMED"))
    a.add_event_handler("sm_failed", lambda s: out("SM FAILED") or (outcome.done() or outcome.set_result("RESUME REFUSED")))
    await a.start()
    try:
        sm = await asyncio.wait_for(enabled, ARGS.step_timeout)
    except asyncio.TimeoutError:
        fail("stream management not enabled")
    sm_id = sm["id"]
    out("SM ENABLED", "resume=" + str(sm["resume"]), "id=" + str(sm_id))
    out("READY", a.boundjid.full)
    await asyncio.wait_for(a.disconnected, ARGS.timeout)
    out("DISCONNECTED")
    await until(lambda: os.path.exists(ARGS.wait_file), "the go-ahead file", ARGS.timeout)
    a.add_event_handler("session_start", lambda _: out("BOUND AGAIN", a.boundjid.full))
    a.add_event_handler("failed_all_auth", lambda _: outcome.done() or outcome.set_result("AUTH REFUSED"))
    a["xep_0198"].sm_id = sm_id
    a.connect(address=(ARGS.host, ARGS.port), use_ssl=ARGS.direct_tls,
              force_starttls=not ARGS.direct_tls)
    try:
        res = await asyncio.wait_for(outcome, ARGS.step_timeout)
    except asyncio.TimeoutError:
        fail("no outcome after reconnecting")
    out(res)
    await asyncio.sleep(1.0)
    await a.stop()


SCENARIOS = {
    "revoke": sc_revoke,
    "login": sc_login,
    "chat": sc_chat,
    "listen": sc_listen,
    "send": sc_send,
    "roster": sc_roster,
    "shared": sc_shared,
    "offline": sc_offline,
    "carbons": sc_carbons,
    "block": sc_block,
    "resume": sc_resume,
}


def run_script(scenario, accounts, extra=()):
    """The main of a companion script (slix_mam.py, ...): the connection
    options, the script's own (extra: (flag, argparse keywords) pairs),
    `accounts` accounts, then scenario(accounts) within --timeout."""
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--direct-tls", action="store_true")
    for flag, kw in extra:
        p.add_argument(flag, **kw)
    p.add_argument("--step-timeout", type=float, default=15)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--debug", action="store_true")
    p.add_argument("accounts", nargs=accounts)
    ARGS = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if ARGS.debug else logging.ERROR,
                        format="%(levelname)s %(name)s %(message)s", stream=sys.stderr)
    loop = asyncio.get_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(ARGS.accounts), ARGS.timeout))
    except asyncio.TimeoutError:
        fail("scenario timed out")
    out("DONE")


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--direct-tls", action="store_true")
    p.add_argument("--mech")
    p.add_argument("--to")
    p.add_argument("--body")
    p.add_argument("--reply-to")
    p.add_argument("--reply-body")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--wait-file")
    p.add_argument("--source", help="local IP address to connect from")
    p.add_argument("--step-timeout", type=float, default=15)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--debug", action="store_true")
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("accounts", nargs="+")
    ARGS = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if ARGS.debug else logging.ERROR,
                        format="%(levelname)s %(name)s %(message)s", stream=sys.stderr)
    loop = asyncio.get_event_loop()
    if ARGS.source:
        # slixmpp has no source-address option: bind every connection.
        import functools
        loop.create_connection = functools.partial(loop.create_connection, local_addr=(ARGS.source, 0))
    try:
        loop.run_until_complete(asyncio.wait_for(SCENARIOS[ARGS.scenario](ARGS.accounts), ARGS.timeout))
    except asyncio.TimeoutError:
        fail("scenario timed out")
    except AuthFailed as e:
        out("AUTH FAILED", str(e))
        sys.exit(1)
    out("DONE")


if __name__ == "__main__":
    main()
