// xmpp.js (@xmpp/client 0.14) scenarios for the Palisade conformance tests.
//
// node xmppjs.mjs SCENARIO SERVICE USERNAME PASSWORD [TO BODY]
//   SERVICE: xmpp://host:port (STARTTLS), xmpps://host:port (direct TLS) or
//            wss://host:port/xmpp-websocket
//   login:    log in, print "LOGIN OK <jid>" or "AUTH FAILED <condition>"
//   exchange: log in, send BODY to TO, wait for a chat message back and print
//             "RECEIVED <from-bare> <body>"
// Trust the server's certificate with NODE_EXTRA_CA_CERTS. Exits non-zero on
// failure. Node 20 has no global WebSocket: ws provides it.
import { WebSocket } from "ws";
import { client, xml } from "@xmpp/client";

globalThis.WebSocket ??= WebSocket;

const [scenario, service, username, password, to, body] = process.argv.slice(2);
const timeoutMs = Number(process.env.XMPPJS_TIMEOUT_MS || 20000);

function out(...parts) {
  process.stdout.write(parts.join(" ") + "\n");
}

const timer = setTimeout(() => {
  out("FAIL timeout");
  process.exit(1);
}, timeoutMs);

const xmpp = client({ service, domain: "localhost", username, password, resource: "xmppjs" });
xmpp.reconnect.stop();
xmpp.on("error", (err) => {
  if (process.env.XMPPJS_DEBUG) console.error("error:", err);
});
if (process.env.XMPPJS_DEBUG) {
  xmpp.on("element", (el) => console.error("IN ", el.toString()));
  xmpp.on("send", (el) => console.error("OUT", el.toString()));
}

let gotReply;
const reply = new Promise((resolve) => (gotReply = resolve));
xmpp.on("stanza", (stanza) => {
  if (!stanza.is("message")) return;
  const b = stanza.getChildText("body");
  if (stanza.attrs.type === "error") {
    out("MESSAGE ERROR", stanza.attrs.from, stanza.getChild("error")?.children?.[0]?.name);
    return;
  }
  if (b) {
    out("RECEIVED", stanza.attrs.from.split("/")[0], b);
    gotReply(b);
  }
});

try {
  const address = await xmpp.start();
  out("LOGIN OK", address.toString());
} catch (err) {
  if (err.name === "SASLError") {
    out("AUTH FAILED", err.condition);
  } else {
    out("FAIL", err.name, err.condition || "", err.message);
  }
  process.exit(1);
}

try {
  if (scenario === "exchange") {
    await xmpp.send(xml("presence"));
    await xmpp.send(xml("message", { to, type: "chat" }, xml("body", {}, body)));
    out("SENT", body);
    await reply;
  }
  await xmpp.stop();
} catch (err) {
  out("FAIL", err.name, err.message);
  process.exit(1);
}
clearTimeout(timer);
out("DONE");
process.exit(0);
