#!/usr/bin/python3
"""slixmpp (1.8.3) in-band registration (XEP-0077, plugin xep_0077) scenario
for the Palisade conformance tests, built on the client of slix.py.

Usage: slix_register.py [options] --weak PW --read-time S NEW   (NEW is jid:password)

Before logging in, the client takes the registration form, submits it with
the weak password PW (printing "REG ERROR <condition> FIELDS <names>
PASSWORD <empty|echoed|missing>" for the refusal), then "reads the form"
for S seconds, like a user would, submits the real password ("REGISTERED"),
and logs in with the new account on the same stream ("LOGIN OK ...").
Exits 1 with "FAIL <reason>" otherwise.
"""

import asyncio

from slixmpp import Iq
from slixmpp.exceptions import IqError, IqTimeout

import slix
from slix import Client, fail, out

NS = "jabber:iq:register"


def fields_of(xml):
    """The child element names of the <query/> in xml, and its password."""
    q = xml.find("{%s}query" % NS)
    if q is None:
        return [], None
    names = [child.tag.split("}", 1)[-1] for child in q]
    return names, q.find("{%s}password" % NS)


class RegClient(Client):
    def __init__(self, account):
        super().__init__(account, plugins=("xep_0004", "xep_0066", "xep_0077"))
        self.registered = asyncio.get_event_loop().create_future()
        self.add_event_handler("register", self._on_register)

    def send(self, data, use_filters=True):
        # slixmpp 1.8.3 holds back every stanza but bind and session until
        # a session exists ("NOT SENT"), so its own xep_0077 plugin never
        # gets the form before login; let the registration IQs through.
        if not self._session_started and isinstance(data, Iq) and data.get_plugin("register", check=True):
            self.send_raw(str(data))
            return
        super().send(data, use_filters)

    def _submit(self, password):
        iq = self.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.boundjid.user
        iq["register"]["password"] = password
        return iq.send(timeout=slix.ARGS.step_timeout)

    async def _on_register(self, form):
        names, _ = fields_of(form.xml)
        out("FORM", ",".join(names))
        try:
            await self._submit(slix.ARGS.weak)
            fail("the weak password was accepted")
        except IqError as e:
            names, pw = fields_of(e.iq.xml)
            if pw is None:
                state = "missing"
            elif (pw.text or "").strip():
                state = "echoed"
            else:
                state = "empty"
            out("REG ERROR", e.iq["error"]["condition"], "FIELDS", ",".join(names) or "-", "PASSWORD", state)
        except IqTimeout:
            fail("no answer to the registration")
        out("READING", slix.ARGS.read_time)
        await asyncio.sleep(slix.ARGS.read_time)
        try:
            await self._submit(self.password)
        except IqError as e:
            fail("registration refused: " + e.iq["error"]["condition"])
        except IqTimeout:
            fail("no answer to the registration")
        out("REGISTERED", self.boundjid.bare)


async def sc_register(accounts):
    c = RegClient(accounts[0])
    c.connect(address=(slix.ARGS.host, slix.ARGS.port), use_ssl=slix.ARGS.direct_tls,
              force_starttls=not slix.ARGS.direct_tls)
    try:
        await asyncio.wait_for(asyncio.shield(c.session), slix.ARGS.read_time + slix.ARGS.step_timeout)
    except slix.AuthFailed as e:
        fail("login after registration: " + str(e))
    except asyncio.TimeoutError:
        fail("no session")
    out("LOGIN OK", c.name, c.used_mech, c.boundjid.full)
    await c.stop()


if __name__ == "__main__":
    slix.run_script(sc_register, 1, extra=(
        ("--weak", {"required": True}),
        ("--read-time", {"type": float, "required": True}),
    ))
