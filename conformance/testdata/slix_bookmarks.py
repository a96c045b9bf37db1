#!/usr/bin/python3
"""slixmpp (1.8.3) bookmarks scenario for the Palisade conformance tests
(XEP-0402 section 5.3), built on the client of slix.py.

Usage: slix_bookmarks.py [options] POEZIO CONVERSE   (two resources of one
account, each jid/resource:password)

"poezio" keeps its bookmarks in private XML (XEP-0049 through slixmpp's
xep_0048 plugin), "converse" uses XEP-0402 (urn:xmpp:bookmarks:1 over
xep_0060, +notify through xep_0115/xep_0163). Each sees what the other
saved. Prints machine-checkable lines; exits 1 with "FAIL <reason>".
"""

from slixmpp.plugins.xep_0048.stanza import Bookmarks
from slixmpp.xmlstream import ET

import slix
from slix import Client, fail, out, until

NS = "urn:xmpp:bookmarks:1"


class PepClient(Client):
    """A client whose initial presence carries up-to-date capabilities."""

    async def _on_start(self, ev):
        await self["xep_0115"].update_caps(broadcast=False)
        await super()._on_start(ev)


def options_form(client, form_type, **fields):
    form = client["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
    for var, value in fields.items():
        form.add_field(var="pubsub#" + var, value=value)
    return form


async def private_rooms(client):
    res = await client["xep_0048"].get_bookmarks(method="xep_0049", timeout=10)
    confs = res["private"]["bookmarks"]["conferences"]
    return sorted(str(c["jid"]) for c in confs), {str(c["jid"]): c for c in confs}


async def scenario(accounts):
    plugins = ("xep_0004", "xep_0048", "xep_0049", "xep_0060", "xep_0115", "xep_0163")
    p = PepClient(accounts[0], plugins=plugins)
    c = PepClient(accounts[1], plugins=plugins)
    events = []

    c["xep_0060"].map_node_event(NS, "bookmarks2")
    c.add_event_handler("session_bind", lambda _: c["xep_0163"].add_interest(NS))

    def on_publish(msg):
        # xep_0060 raises one event per item, holding that item.
        iid = msg["pubsub_event"]["items"]["item"]["id"]
        out("EVENT PUBLISH", iid)
        events.append(("publish", iid))

    def on_retract(msg):
        rid = msg["pubsub_event"]["items"]["retract"]["id"]
        out("EVENT RETRACT", rid)
        events.append(("retract", rid))
    c.add_event_handler("bookmarks2_publish", on_publish)
    c.add_event_handler("bookmarks2_retract", on_retract)

    await p.start()
    await c.start()
    me = c.boundjid.bare

    info = await c["xep_0030"].get_info(jid=me, timeout=10)
    feats = info["disco_info"]["features"]
    out("FEATURES", " ".join(f for f in (NS + "#compat", NS + "#compat-pep") if f in feats))

    # poezio saves a bookmark in private XML.
    bm = Bookmarks()
    bm.add_conference("coven@chat.localhost", "alice", name="The Coven", autojoin=True, password="pw1")
    await p["xep_0048"].set_bookmarks(bm, method="xep_0049", timeout=10)
    await until(lambda: ("publish", "coven@chat.localhost") in events, "the XEP-0402 notification")

    # Converse reads it as a XEP-0402 item.
    res = await c["xep_0060"].get_items(me, NS, timeout=10)
    for item in res["pubsub"]["items"]["substanzas"]:
        conf = item.xml.find("{%s}conference" % NS)
        if conf is None:
            fail("item %s without conference" % item["id"])
        nick = conf.find("{%s}nick" % NS)
        out("ITEM", item["id"], conf.get("name"), conf.get("autojoin"), nick.text if nick is not None else "-")

    # Converse adds a bookmark the XEP-0402 way (its publish-options).
    conf = ET.Element("{%s}conference" % NS, name="Orchard", autojoin="true")
    ET.SubElement(conf, "{%s}nick" % NS).text = "al"
    await c["xep_0060"].publish(me, NS, id="orchard@chat.localhost", payload=conf,
                                options=options_form(c, "http://jabber.org/protocol/pubsub#publish-options",
                                                     persist_items="true", max_items="max",
                                                     send_last_published_item="never", access_model="whitelist"),
                                timeout=10)
    rooms, by = await private_rooms(p)
    out("PRIVATE", ",".join(rooms), by["orchard@chat.localhost"]["nick"] if "orchard@chat.localhost" in by else "-")

    # Converse removes the first one: poezio no longer sees it.
    await c["xep_0060"].retract(me, NS, "coven@chat.localhost", notify=True, timeout=10)
    rooms, _ = await private_rooms(p)
    out("PRIVATE", ",".join(rooms))
    out("BOOKMARKS OK")
    for x in (p, c):
        await x.stop()


def main():
    slix.run_script(scenario, 2, ())


if __name__ == "__main__":
    main()
