#!/usr/bin/python3
"""slixmpp (1.8.3) personal eventing (XEP-0163) scenario for the Palisade
conformance tests, built on the client of slix.py.

Usage: slix_pep.py [options] ALICE BOB CAROL   (each jid:password)

alice and bob become mutual contacts through the real roster; carol is no
contact. bob's client announces +notify (XEP-0115) for nicknames and the
OMEMO device list only. alice publishes a nickname (XEP-0172), a device
list with publish-options access_model=open (the way Conversations does,
XEP-0223) and a mood (XEP-0107). Prints machine-checkable lines; exits 1
with "FAIL <reason>" when something is missing.
"""

import asyncio

from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ElementBase, ET, register_stanza_plugin

import slix
from slix import Client, fail, out, until

NS_OMEMO = "eu.siacs.conversations.axolotl"
DEVICELIST = NS_OMEMO + ".devicelist"
BUNDLE = NS_OMEMO + ".bundles:4711"
NS_ERRORS = "http://jabber.org/protocol/pubsub#errors"


class DeviceList(ElementBase):
    name = "list"
    namespace = NS_OMEMO
    plugin_attrib = "omemo_devicelist"


class PepClient(Client):
    """A client whose initial presence carries up-to-date capabilities."""

    async def _on_start(self, ev):
        await self["xep_0115"].update_caps(broadcast=False)
        await super()._on_start(ev)


def want_devicelist(client):
    """Announce +notify for the OMEMO device list once bound (as the
    plugins of slixmpp do for theirs: the features belong to the bound JID)."""
    register_stanza_plugin(client["xep_0060"].stanza.EventItem, DeviceList)
    client["xep_0060"].map_node_event(DEVICELIST, "devicelist")
    client.add_event_handler("session_bind", lambda _: client["xep_0163"].add_interest(DEVICELIST))


def options_form(client, form_type, **fields):
    form = client["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
    for var, value in fields.items():
        form.add_field(var="pubsub#" + var, value=value)
    return form


def devices(*ids):
    el = ET.Element("{%s}list" % NS_OMEMO)
    for i in ids:
        ET.SubElement(el, "{%s}device" % NS_OMEMO, id=str(i))
    return el


async def scenario(accounts):
    base = ("xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0172")
    a = PepClient(accounts[0], plugins=base + ("xep_0107",))
    b = PepClient(accounts[1], plugins=base)
    c = PepClient(accounts[2], plugins=base)
    events = []

    want_devicelist(b)

    def on_nick(msg):
        nick = msg["pubsub_event"]["items"]["item"]["nick"]["nick"]
        delayed = msg.xml.find("{urn:xmpp:delay}delay") is not None
        out("EVENT NICK", msg["from"].bare, nick, "DELAYED" if delayed else "LIVE")
        events.append(("nick", nick))

    def on_devicelist(msg):
        item = msg["pubsub_event"]["items"]["item"]
        ids = sorted(d.get("id") for d in item.xml.iter("{%s}device" % NS_OMEMO))
        out("EVENT DEVICELIST", msg["from"].bare, ",".join(ids))
        events.append(("devicelist", ",".join(ids)))

    def on_any_event(msg):
        node = msg["pubsub_event"]["items"]["node"]
        if node not in ("http://jabber.org/protocol/nick", DEVICELIST):
            out("EVENT OTHER", node)
            events.append(("other", node))
    b.add_event_handler("user_nick_publish", on_nick)
    b.add_event_handler("devicelist_publish", on_devicelist)
    b.add_event_handler("pubsub_publish", on_any_event)

    for x in (a, b):
        x.auto_authorize = True
        x.auto_subscribe = True
    await a.start()
    await b.start()
    await c.start()
    a.send_presence_subscription(pto=b.boundjid.bare)

    def sub(x, other):
        r = x.client_roster
        return r[other.boundjid.bare]["subscription"] if other.boundjid.bare in r else "none"
    await until(lambda: sub(a, b) == "both" and sub(b, a) == "both", "mutual subscription")
    out("SUBSCRIBED")

    # bob goes offline; alice publishes.
    await b.stop()
    await a["xep_0172"].publish_nick("Alice One", timeout=10)
    open_opts = options_form(a, "http://jabber.org/protocol/pubsub#publish-options", access_model="open")
    await a["xep_0060"].publish(a.boundjid.bare, DEVICELIST, id="current", payload=devices(1, 2),
                                options=open_opts, timeout=10)
    await a["xep_0107"].publish_mood("happy", timeout=10)
    out("PUBLISHED")

    # The bundle node exists with the default (presence) access: publishing
    # with access_model=open fails with precondition-not-met; the client
    # reconfigures the node and publishes again (Conversations' algorithm).
    bundle = ET.Element("{%s}bundle" % NS_OMEMO)
    await a["xep_0060"].publish(a.boundjid.bare, BUNDLE, id="current", payload=bundle, timeout=10)
    try:
        await a["xep_0060"].publish(a.boundjid.bare, BUNDLE, id="current", payload=bundle,
                                    options=options_form(a, "http://jabber.org/protocol/pubsub#publish-options", access_model="open"),
                                    timeout=10)
        fail("publish-options on a presence node succeeded")
    except IqError as e:
        cond = e.iq["error"]["condition"]
        pre = e.iq["error"].xml.find("{%s}precondition-not-met" % NS_ERRORS) is not None
        out("PUBLISH OPTIONS", cond, "precondition-not-met" if pre else "-")
    await a["xep_0060"].set_node_config(a.boundjid.bare, BUNDLE,
                                        options_form(a, "http://jabber.org/protocol/pubsub#node_config", access_model="open"),
                                        timeout=10)
    await a["xep_0060"].publish(a.boundjid.bare, BUNDLE, id="current", payload=bundle,
                                options=options_form(a, "http://jabber.org/protocol/pubsub#publish-options", access_model="open"),
                                timeout=10)
    out("BUNDLE PUBLISHED")

    # bob comes back: the last nickname and device list arrive, no mood.
    b2 = PepClient(accounts[1], plugins=base)
    want_devicelist(b2)
    b2.add_event_handler("user_nick_publish", on_nick)
    b2.add_event_handler("devicelist_publish", on_devicelist)
    b2.add_event_handler("pubsub_publish", on_any_event)
    await b2.start()
    await until(lambda: ("nick", "Alice One") in events and ("devicelist", "1,2") in events,
                "the last nickname and device list")
    await a["xep_0172"].publish_nick("Alice Two", timeout=10)
    await until(lambda: ("nick", "Alice Two") in events, "the new nickname")
    await asyncio.sleep(1.0)
    if any(kind == "other" for kind, _ in events):
        fail("bob got events he did not ask for: %r" % events)

    # carol, no contact, may read the open device list but not the nickname.
    res = await c["xep_0060"].get_items(a.boundjid.bare, DEVICELIST, timeout=10)
    ids = sorted(d.get("id") for d in res.xml.iter("{%s}device" % NS_OMEMO))
    out("CAROL DEVICELIST", ",".join(ids))
    try:
        await c["xep_0060"].get_items(a.boundjid.bare, "http://jabber.org/protocol/nick", timeout=10)
        fail("carol read a presence-access node")
    except IqError as e:
        out("CAROL NICK", e.iq["error"]["condition"])
    # alice's own items by id.
    res = await a["xep_0060"].get_items(a.boundjid.bare, DEVICELIST, item_ids=["current"], timeout=10)
    out("ALICE ITEMS", ",".join(i["id"] for i in res["pubsub"]["items"]))
    out("PEP OK")
    for x in (a, b2, c):
        await x.stop()


def main():
    slix.run_script(scenario, 3, ())


if __name__ == "__main__":
    main()
