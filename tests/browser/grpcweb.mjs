// The pages' gRPC-web client (/static/grpcweb.js) in node against the real server:
// protobuf round trips, login errors as gRPC statuses, unary calls and both streams.
// Usage: node grpcweb.mjs http://127.0.0.1:PORT/
import assert from "node:assert/strict";
import vm from "node:vm";

const base = process.argv[2];
assert.ok(base, "usage: node grpcweb.mjs BASE_URL");
const origin = base.replace(/\/$/, "");

const resp = await fetch(origin + "/static/grpcweb.js");
assert.equal(resp.status, 200);
assert.match(resp.headers.get("content-type"), /javascript/);
vm.runInThisContext(await resp.text(), { filename: "grpcweb.js" });
const { encode, decode, agent: A, supervisor: S, api, GrpcError } = globalThis.GrpcWeb;

// ---- codec ----
// Known bytes: field 1 string "bob" (0a 03 62 6f 62), field 2 varint 300 (10 ac 02).
assert.deepEqual([...encode(A.LoginResponse, { token: "bob", expires_in_seconds: 300 })],
  [0x0a, 3, 0x62, 0x6f, 0x62, 0x10, 0xac, 0x02]);
// proto3 `optional` 0 is sent; absent is not.
assert.deepEqual([...encode(A.StreamEventsRequest, { resume_after: 0 })], [0x08, 0]);
assert.deepEqual([...encode(A.StreamEventsRequest, {})], []);
const pop = {
  caller_number: "+442079460958",
  customer: { id: "7", name: "Zoë Ünïcode", phone_numbers: ["+1", "+2"], account: "42", attributes: { tier: "gold", vip: "yes" } },
  last_interactions: [{ id: "a", channel: "voice", at_unix_ms: 1_760_000_000_123, agent_id: "bob", disposition: "sale", notes: "" }],
  ivr_answers: { postcode: "12345" },
  queue: "support",
  wait_ms: 2 ** 40 + 5,
  script_id: "",
  callback_number: "+442071234001",
};
assert.deepEqual(decode(A.ScreenPop, encode(A.ScreenPop, pop)), pop);
const step = {
  script_id: "retention", title: "Retention",
  steps: [{ step: "greeting", kind: "say", text: "Greet Ada", input: "", choices: [], sensitive: false, json: "{}" }],
  awaiting: { step: "reason", kind: "ask", text: "Why?", input: "choice", choices: [{ value: "cancel", label: "Wants to cancel" }], sensitive: true, json: "{}" },
  outcome: "", failure: "",
};
assert.deepEqual(decode(A.ScriptStepResponse, encode(A.ScriptStepResponse, step)), step);
// A transfer names one target of the oneof; the others are not sent.
assert.deepEqual([...encode(A.TransferRequest, { call_id: "7", queue: "q" })], [0x0a, 1, 0x37, 0x12, 1, 0x71]);
const q = { name: "q", waiting: [], longest_wait_ms: 0, agents_logged_in: 2, agents_available: 1, service_level_today: 0.8125, answered_today: 13, abandoned_today: 3, voicemail_tasks_waiting: 2, voicemail_tasks_today: 5 };
assert.deepEqual(decode(S.QueueView, encode(S.QueueView, q)), q);
// A disposition carries the callback the agent booked (field 4, int64 Unix ms).
assert.deepEqual(decode(A.DispositionRequest, encode(A.DispositionRequest, { call_id: "7", code: "call-back", notes: "", callback_at_unix_ms: 1_760_000_000_123 })),
  { call_id: "7", code: "call-back", notes: "", callback_at_unix_ms: 1_760_000_000_123 });
// A preview offer says so (CallOffered field 4, bool).
assert.deepEqual(decode(A.AgentEvent, encode(A.AgentEvent, { call_offered: { call_id: "p", preview: true } })).call_offered,
  { call_id: "p", ring_timeout_ms: 0, preview: true });
// A campaign's agents (field 17, varint: 88 01) and dial ratio (field 18, double: 91 01).
assert.deepEqual([...encode(S.CampaignView, { agents: 2, dial_ratio: 1.5 })],
  [0x88, 0x01, 2, 0x91, 0x01, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f]);
const campaign = {
  name: "renewals", state: "running", mode: "predictive", queue: "outbound", contacts: 10, pending: 4,
  in_progress: 3, done: 3, attempts: 9, answered: 5, no_answer: 2, busy: 1, abandoned: 1, machine: 0,
  failed: 0, abandonment_rate: 1 / 6, agents: 2, dial_ratio: 1.5,
};
assert.deepEqual(decode(S.CampaignView, encode(S.CampaignView, campaign)), campaign);
// Voicemail: a message round trip, and audio bytes as sent (field 1, length 4).
const vm1 = { id: "1800000000000-ab-42", mailbox: "support", caller_number: "42", duration_ms: 1500, left_at_unix_ms: 1_800_000_000_000, heard: true, handled_by: "", outcome: "" };
assert.deepEqual(decode(A.ListVoicemailResponse, encode(A.ListVoicemailResponse, { messages: [vm1] })), { messages: [vm1] });
const wav = Uint8Array.from([0x52, 0x49, 0x46, 0x46]);
assert.deepEqual([...encode(A.VoicemailAudio, { wav })], [0x0a, 4, 0x52, 0x49, 0x46, 0x46]);
assert.deepEqual(decode(A.VoicemailAudio, encode(A.VoicemailAudio, { wav })).wav, wav);
assert.deepEqual(decode(A.VoicemailAudio, new Uint8Array(0)).wav, new Uint8Array(0));
// Unknown fields are skipped; truncated input is an error, not garbage.
assert.deepEqual(decode(A.CallRequest, Uint8Array.from([0x0a, 1, 0x78, 0x18, 5, 0x22, 1, 0])), { call_id: "x" });
assert.throws(() => decode(A.CallRequest, Uint8Array.from([0x0a, 5, 0x78])), /truncated/);

// ---- against the server ----
const o = { base: origin };
await assert.rejects(api.agentLogin({ agent_id: "bob", password: "wrong" }, o),
  (e) => e instanceof GrpcError && e.code === 16, "a wrong password is UNAUTHENTICATED");
await assert.rejects(api.setStatus({ status: A.Status.AVAILABLE }, { ...o, token: "not-a-token" }),
  (e) => e.code === 16, "a bad token is UNAUTHENTICATED");
const login = await api.agentLogin({ agent_id: "bob", password: "bob-pw" }, o);
assert.ok(login.token.length > 10);
assert.ok(login.expires_in_seconds > 0);
const token = login.token;

// The agent's stream carries the status change this client asks for.
const abort = new AbortController();
const events = [];
const streaming = api.streamEvents({}, { ...o, token, signal: abort.signal, onMessage: (e) => events.push(e) })
  .catch((e) => { if (e.name !== "AbortError") throw e; });
await api.setStatus({ status: A.Status.ON_BREAK, break_reason: "training" }, { ...o, token });
for (let i = 0; i < 100 && !events.some((e) => e.status_changed); i++) await new Promise((r) => setTimeout(r, 50));
const change = events.find((e) => e.status_changed);
assert.ok(change, `a status change on the stream, got ${JSON.stringify(events)}`);
assert.deepEqual(change.status_changed, { status: A.Status.ON_BREAK, break_reason: "training" });
assert.ok(change.id > 0 && change.at_unix_ms > 1_600_000_000_000);
abort.abort();
await streaming;
await assert.rejects(api.setStatus({ status: 0 }, { ...o, token }), (e) => e.code === 3, "UNSPECIFIED is INVALID_ARGUMENT");

// The supervisor stream starts with a snapshot of every agent and queue.
const sup = await api.supervisorLogin({ supervisor_id: "sue", password: "sue-pw" }, o);
await assert.rejects(api.streamStatus({ ...o, token }), (e) => e.code === 16 || e.code === 7, "an agent token is refused");
const supAbort = new AbortController();
const snapshot = await new Promise((resolve, reject) => {
  api.streamStatus({ ...o, token: sup.token, signal: supAbort.signal, onMessage: (u) => u.snapshot && resolve(u.snapshot) })
    .catch((e) => { if (e.name !== "AbortError") reject(e); });
});
supAbort.abort();
const bob = snapshot.agents.find((a) => a.agent_id === "bob");
assert.equal(bob.status, A.Status.ON_BREAK);
assert.equal(bob.break_reason, "training");
assert.deepEqual(bob.queues, ["support"]);
assert.deepEqual(snapshot.queues.map((x) => x.name).sort(), ["sales", "support"]);

await api.setStatus({ status: A.Status.LOGGED_OUT }, { ...o, token });
await api.agentLogout({ ...o, token });
await api.supervisorLogout({ ...o, token: sup.token });
console.log("grpcweb: codec round trips, statuses, unary calls and both streams work against the server");
