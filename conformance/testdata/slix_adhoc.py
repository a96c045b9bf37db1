#!/usr/bin/python3
"""slixmpp (1.8.3) ad-hoc commands scenario (XEP-0050, XEP-0133) for the
Palisade conformance tests, built on the client of slix.py.

Usage: slix_adhoc.py [options] --target JID ADMIN OTHER   (each jid:password)

OTHER, no administrator, lists the server's commands (none) and is refused
End User Session. ADMIN lists them, starts End User Session and cancels it
with slixmpp's xep_0050 workflow, starts it again, fills the form it gets
with --target and completes it. Prints machine-checkable lines; exits 1
with "FAIL <reason>" when something is missing.
"""

import asyncio

from slixmpp.exceptions import IqError

import slix
from slix import Client, fail, out

NS_COMMANDS = "http://jabber.org/protocol/commands"
END_SESSION = "http://jabber.org/protocol/admin#end-user-session"
PLUGINS = ("xep_0004", "xep_0050", "xep_0133")


def run_command(client, on_form):
    """Start End User Session through xep_0133; on_form(iq, session) gets
    the first answer. Returns a future with the final answer."""
    done = asyncio.get_event_loop().create_future()

    def finish(iq, session):
        if not done.done():
            done.set_result(iq)

    def first(iq, session):
        session["next"] = finish
        on_form(iq, session)

    client["xep_0133"].end_user_session(session={"next": first, "error": finish})
    return done


async def scenario(accounts):
    admin = await Client(accounts[0], plugins=PLUGINS).start()
    other = await Client(accounts[1], plugins=PLUGINS).start()
    server = admin.boundjid.server

    items = await other["xep_0133"].get_commands(timeout=10)
    out("OTHER COMMANDS", len(items["disco_items"]["items"]))
    res = await asyncio.wait_for(run_command(other, lambda iq, s: fail("got a form: %s" % iq)), slix.ARGS.step_timeout)
    out("OTHER EXECUTE", res["type"], res["error"]["condition"])

    items = await admin["xep_0133"].get_commands(timeout=10)
    for jid, node, name in items["disco_items"]["items"]:
        out("ADMIN COMMAND", jid, node, name)

    # Started, then cancelled.
    res = await asyncio.wait_for(run_command(admin, lambda iq, s: admin["xep_0050"].cancel_command(s)), slix.ARGS.step_timeout)
    out("CANCEL", res["type"], res["command"]["status"])

    def submit(iq, session):
        form = iq["command"]["form"]
        fields = form.get_fields()
        form_type = fields["FORM_TYPE"]["value"]  # a list: slixmpp reads hidden fields as multi-valued
        form_type = form_type[0] if isinstance(form_type, list) else form_type
        out("FORM", iq["command"]["status"], form["type"], form_type,
            fields["accountjids"]["var"], fields["accountjids"]["type"])
        answer = admin["xep_0004"].make_form(ftype="submit")
        answer.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
        answer.add_field(var="accountjids", ftype="jid-multi", value=[slix.ARGS.target])
        session["payload"] = answer
        admin["xep_0050"].complete_command(session)

    res = await asyncio.wait_for(run_command(admin, submit), slix.ARGS.step_timeout)
    if res["type"] != "result":
        fail("submit: %s" % res)
    notes = res["command"]["notes"]
    out("COMPLETED", res["command"]["status"], *["%s: %s" % n for n in notes])

    # A session id the server never gave.
    try:
        await admin["xep_0050"].send_command(server, END_SESSION, action="complete", sessionid="nosuch", timeout=10)
        fail("a made-up sessionid was accepted")
    except IqError as e:
        bad = e.iq["error"].xml.find("{%s}bad-sessionid" % NS_COMMANDS) is not None
        out("BAD SESSIONID", e.iq["error"]["condition"], "bad-sessionid" if bad else "no app condition")
    out("ADHOC OK")
    for c in (admin, other):
        await c.stop()


def main():
    slix.run_script(scenario, 2, [("--target", {"required": True})])


if __name__ == "__main__":
    main()
