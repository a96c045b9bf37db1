// stanza (npm stanza 12) scenarios for the Palisade conformance tests.
//
// node stanza.mjs SCENARIO URL JID PASSWORD [TO BODY]
//   URL: wss://host:port/xmpp-websocket (stanza has no TCP transport)
//   login:    log in, print "MECHANISMS <offered...>", "CHANNEL-BINDING
//             <types...>" (XEP-0440, when offered), "LOGIN OK <jid>" or
//             "AUTH FAILED"
//   exchange: log in, send BODY to TO as chat, wait for a chat message back
//             and print "RECEIVED <from-bare> <body>"
// Trust the server's certificate with NODE_EXTRA_CA_CERTS. Exits non-zero on
// failure. In node, stanza opens its WebSocket with the ws package.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const XMPP = require("stanza");

const [scenario, url, jid, password, to, body] = process.argv.slice(2);
const timeoutMs = Number(process.env.STANZA_TIMEOUT_MS || 20000);

function out(...parts) {
  process.stdout.write(parts.join(" ") + "\n");
}

function fail(...why) {
  out("FAIL", ...why);
  process.exit(1);
}

const timer = setTimeout(() => fail("timeout"), timeoutMs);
let finished = false; // the scenario ran to its end

const client = XMPP.createClient({
  jid,
  password,
  resource: "stanza",
  transports: { websocket: url, bosh: false },
});

client.on("raw:incoming", (data) => {
  if (process.env.STANZA_DEBUG) console.error("IN ", data);
  // The SASL mechanisms offered, as the server sent them.
  if (data.includes("<mechanisms")) {
    const names = [...data.matchAll(/<mechanism>([^<]+)<\/mechanism>/g)].map((m) => m[1]);
    out("MECHANISMS", ...names);
  }
  // XEP-0440: the channel-binding types offered, if any.
  if (data.includes("sasl-channel-binding")) {
    const types = [...data.matchAll(/<channel-binding [^>]*type=["']([^"']+)["']/g)].map((m) => m[1]);
    out("CHANNEL-BINDING", ...types);
  }
});
if (process.env.STANZA_DEBUG) {
  client.on("raw:outgoing", (data) => console.error("OUT", data));
}

client.on("auth:failed", () => {
  out("AUTH FAILED");
  process.exit(1);
});
client.on("stream:error", (err) => fail("stream error", err?.condition || ""));

client.on("message", (msg) => {
  if (msg.type === "error") {
    out("MESSAGE ERROR", msg.from, msg.error?.condition || "");
    return;
  }
  if (scenario === "exchange" && msg.body) {
    out("RECEIVED", msg.from.split("/")[0], msg.body);
    finished = true;
    client.disconnect();
  }
});

client.on("session:started", () => {
  out("LOGIN OK", client.jid);
  if (scenario === "login") {
    finished = true;
    client.disconnect();
    return;
  }
  client.sendPresence();
  client.sendMessage({ to, type: "chat", body });
  out("SENT", body);
});

client.on("disconnected", () => {
  if (!finished) fail("disconnected");
  clearTimeout(timer);
  out("DONE");
  process.exit(0);
});

client.connect();
