// xmpp.js (@xmpp/client 0.14) listener for the sender-forgery conformance
// tests (forgery_test.go). xmpp.js parses with ltx, which keeps the last of
// duplicate attributes and does not check namespaces.
//
// node xmppjs_listen.mjs SERVICE USERNAME PASSWORD RESOURCE
//   Logs in, sends presence, prints "READY <jid>", then prints
//   "MESSAGE <from> <body>" for every message with a body, as xmpp.js
//   shows it (stanza.attrs.from), until a message with body END arrives;
//   then prints "DONE" and exits 0. A disconnection prints "DISCONNECTED".
// Trust the server's certificate with NODE_EXTRA_CA_CERTS.
import { client, xml } from "@xmpp/client";

const [service, username, password, resource] = process.argv.slice(2);
const timeoutMs = Number(process.env.XMPPJS_TIMEOUT_MS || 30000);

function out(...parts) {
  process.stdout.write(parts.join(" ") + "\n");
}

const timer = setTimeout(() => {
  out("FAIL timeout");
  process.exit(1);
}, timeoutMs);

const xmpp = client({ service, domain: "localhost", username, password, resource });
xmpp.reconnect.stop();
xmpp.on("error", (err) => out("ERROR", err.name, err.condition || "", err.message));
xmpp.on("disconnect", () => out("DISCONNECTED"));

let gotEnd;
const end = new Promise((resolve) => (gotEnd = resolve));
xmpp.on("stanza", (stanza) => {
  if (!stanza.is("message")) return;
  const body = stanza.getChildText("body");
  if (body === null || body === undefined) return;
  out("MESSAGE", stanza.attrs.from, body);
  if (body === "END") gotEnd();
});

try {
  const address = await xmpp.start();
  await xmpp.send(xml("presence"));
  out("READY", address.toString());
  await end;
  await xmpp.stop();
} catch (err) {
  out("FAIL", err.name, err.condition || "", err.message);
  process.exit(1);
}
clearTimeout(timer);
out("DONE");
process.exit(0);
