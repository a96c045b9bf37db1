#!/usr/bin/python3
"""aioxmpp (0.13.3) avatar (XEP-0084 over XEP-0163) scenario for the
Palisade conformance tests.

Usage: aiox_pep.py [options] ALICE BOB   (each jid:password)

alice and bob become mutual contacts with aioxmpp's RosterClient. bob's
AvatarService claims the metadata node with +notify (announced through
aioxmpp's EntityCapsService). alice publishes an avatar set with
AvatarService.publish_avatar_set (data and metadata nodes); bob must get
the metadata notification and then fetch the image bytes from alice's data
node. Prints machine-checkable lines; exits 1 with "FAIL <reason>".
"""

import argparse
import asyncio
import hashlib
import logging
import sys

import aioxmpp
import aioxmpp.avatar

import aiox
from aiox import fail, make_client, out

# A 1x1 transparent PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082")


async def until(pred, what):
    async def loop():
        while not pred():
            await asyncio.sleep(0.1)
    try:
        await asyncio.wait_for(loop(), aiox.ARGS.step_timeout)
    except asyncio.TimeoutError:
        fail("timeout waiting for " + what)


async def scenario(accounts):
    alice = make_client(accounts[0])
    bob = make_client(accounts[1])
    rosters = {}
    avatars = {}
    for c in (alice, bob):
        c.summon(aioxmpp.EntityCapsService)
        rosters[c] = c.summon(aioxmpp.RosterClient)
        avatars[c] = c.summon(aioxmpp.avatar.AvatarService)
    got = asyncio.Queue()

    def on_metadata(jid, metadata):
        pep = [d for d in metadata if d.has_image_data_in_pubsub]
        if pep:
            got.put_nowait((jid, pep))
    avatars[bob].on_metadata_changed.connect(on_metadata)

    async with alice.connected(), bob.connected():
        a_jid, b_jid = alice.local_jid.bare(), bob.local_jid.bare()
        out("LOGIN OK", str(alice.local_jid), str(bob.local_jid))

        def on_subscribe_bob(st):
            rosters[bob].approve(st.from_.bare())
            rosters[bob].subscribe(st.from_.bare())

        def on_subscribe_alice(st):
            rosters[alice].approve(st.from_.bare())
        rosters[bob].on_subscribe.connect(on_subscribe_bob)
        rosters[alice].on_subscribe.connect(on_subscribe_alice)
        rosters[alice].subscribe(b_jid)

        def sub(c, other):
            item = rosters[c].items.get(other)
            return item.subscription if item is not None else "none"
        await until(lambda: sub(alice, b_jid) == "both" and sub(bob, a_jid) == "both", "mutual subscription")
        out("SUBSCRIBED")

        avatar_set = aioxmpp.avatar.AvatarSet()
        avatar_set.add_avatar_image("image/png", image_bytes=PNG, width=1, height=1)
        await asyncio.wait_for(avatars[alice].publish_avatar_set(avatar_set), aiox.ARGS.step_timeout)
        out("PUBLISHED", avatar_set.png_id)

        async def wait_alice():
            while True:
                jid, descriptors = await got.get()
                if jid.bare() == a_jid:
                    return descriptors
        try:
            descriptors = await asyncio.wait_for(wait_alice(), aiox.ARGS.step_timeout)
        except asyncio.TimeoutError:
            fail("no avatar metadata notification")
        d = descriptors[0]
        out("METADATA", str(a_jid), d.id_, d.mime_type, str(d.nbytes))
        data = await asyncio.wait_for(d.get_image_bytes(), aiox.ARGS.step_timeout)
        ok = hashlib.sha1(data).hexdigest() == d.normalized_id
        out("IMAGE", str(len(data)), "SHA1 OK" if ok else "SHA1 MISMATCH")
        out("AVATAR OK")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--step-timeout", type=float, default=15)
    p.add_argument("--timeout", type=float, default=50)
    p.add_argument("--debug", action="store_true")
    p.add_argument("accounts", nargs=2)
    aiox.ARGS = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if aiox.ARGS.debug else logging.WARNING,
                        format="%(levelname)s %(name)s %(message)s", stream=sys.stderr)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(aiox.ARGS.accounts), aiox.ARGS.timeout))
    except asyncio.TimeoutError:
        fail("scenario timed out")
    out("DONE")


if __name__ == "__main__":
    main()
