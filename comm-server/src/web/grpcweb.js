// A small gRPC-web client for the agent desktop and the wallboard: a protobuf
// encoder/decoder driven by hand-written schemas (only the messages the pages use),
// gRPC-web framing (5-byte frames; flag 0x80 marks the trailers frame), unary calls
// and server streaming through fetch + ReadableStream. No dependencies, no build step.
//
// Schemas: { field_name: [number, type, mode] } where type is "string", "bytes"
// (a Uint8Array), "bool", "uint32", "uint64", "int64", "enum", "double" or another
// schema (a message), and
// mode is undefined, "repeated", "map" (map<string, string>) or "optional" (a oneof
// member or proto3 optional: left undefined unless it arrives). Numbers are JS
// numbers: every 64-bit value this API sends (ids, milliseconds) is below 2^53.
(function (root) {
  "use strict";

  const VARINT = new Set(["bool", "uint32", "uint64", "int64", "enum"]);

  // ---- protobuf ----

  function varint(out, n) {
    if (n < 0) {
      // Negative int64: ten bytes of two's complement; exact only to 2^53.
      let big = BigInt.asUintN(64, BigInt(n));
      while (big >= 128n) { out.push(Number(big & 127n) | 128); big >>= 7n; }
      out.push(Number(big));
      return;
    }
    while (n >= 128) { out.push((n % 128) | 128); n = Math.floor(n / 128); }
    out.push(n);
  }

  const utf8 = new TextEncoder();
  const fromUtf8 = new TextDecoder();

  function bytesField(out, num, bytes) {
    varint(out, num * 8 + 2);
    varint(out, bytes.length);
    for (const b of bytes) out.push(b);
  }

  function encodeValue(out, num, type, value) {
    if (type === "string") bytesField(out, num, utf8.encode(value));
    else if (type === "bytes") bytesField(out, num, value);
    else if (type === "double") {
      varint(out, num * 8 + 1);
      const b = new Uint8Array(8);
      new DataView(b.buffer).setFloat64(0, value, true);
      for (const x of b) out.push(x);
    } else if (VARINT.has(type)) {
      varint(out, num * 8);
      varint(out, type === "bool" ? (value ? 1 : 0) : value);
    } else if (typeof type === "object") bytesField(out, num, encode(type, value));
    else throw new Error(`unknown protobuf type ${type}`);
  }

  // Encodes `obj` with `schema`; fields that are undefined or null are left out
  // (so a proto3 `optional` field set to 0 is still sent).
  function encode(schema, obj) {
    const out = [];
    for (const [name, [num, type, mode]] of Object.entries(schema)) {
      const v = obj == null ? undefined : obj[name];
      if (v === undefined || v === null) continue;
      if (mode === "repeated") for (const x of v) encodeValue(out, num, type, x);
      else if (mode === "map") {
        for (const [k, x] of Object.entries(v)) {
          const entry = [];
          encodeValue(entry, 1, "string", k);
          encodeValue(entry, 2, type, x);
          bytesField(out, num, entry);
        }
      } else encodeValue(out, num, type, v);
    }
    return Uint8Array.from(out);
  }

  class Reader {
    constructor(bytes) { this.b = bytes; this.i = 0; }
    done() { return this.i >= this.b.length; }
    byte() {
      if (this.i >= this.b.length) throw new Error("protobuf: truncated message");
      return this.b[this.i++];
    }
    varint() {
      let n = 0, scale = 1;
      for (let k = 0; k < 10; k++) {
        const b = this.byte();
        n += (b & 127) * scale;
        if (b < 128) return n;
        scale *= 128;
      }
      throw new Error("protobuf: varint longer than ten bytes");
    }
    take(len) {
      if (this.i + len > this.b.length) throw new Error("protobuf: truncated field");
      const s = this.b.subarray(this.i, this.i + len);
      this.i += len;
      return s;
    }
    skip(wire) {
      if (wire === 0) this.varint();
      else if (wire === 1) this.take(8);
      else if (wire === 2) this.take(this.varint());
      else if (wire === 5) this.take(4);
      else throw new Error(`protobuf: unsupported wire type ${wire}`);
    }
  }

  const byNumber = new WeakMap();
  function numbers(schema) {
    let t = byNumber.get(schema);
    if (!t) {
      t = new Map();
      for (const [name, [num, type, mode]] of Object.entries(schema)) t.set(num, { name, type, mode });
      byNumber.set(schema, t);
    }
    return t;
  }

  function defaults(schema) {
    const o = {};
    for (const [name, [, type, mode]] of Object.entries(schema)) {
      if (mode === "optional") continue;
      if (mode === "repeated") o[name] = [];
      else if (mode === "map") o[name] = {};
      else if (type === "string") o[name] = "";
      else if (type === "bytes") o[name] = new Uint8Array(0);
      else if (type === "bool") o[name] = false;
      else if (typeof type !== "object") o[name] = 0;
    }
    return o;
  }

  function decodeValue(r, wire, type) {
    if (type === "string") return fromUtf8.decode(r.take(r.varint()));
    if (type === "bytes") return r.take(r.varint()).slice();
    if (type === "double") return new DataView(r.take(8).slice().buffer).getFloat64(0, true);
    if (VARINT.has(type)) {
      const n = r.varint();
      if (type === "bool") return n !== 0;
      // int64 below zero arrives as ten bytes; nothing here sends one.
      return n;
    }
    return decode(type, r.take(r.varint()));
  }

  // Decodes `bytes` as `schema`: scalars default to 0/""/false, repeated to [],
  // maps to {}, absent messages stay undefined (so a oneof shows which is set).
  function decode(schema, bytes) {
    const r = new Reader(bytes);
    const o = defaults(schema);
    const table = numbers(schema);
    while (!r.done()) {
      const key = r.varint();
      const num = Math.floor(key / 8), wire = key % 8;
      const f = table.get(num);
      if (!f) { r.skip(wire); continue; }
      if (f.mode === "map") {
        const e = new Reader(r.take(r.varint()));
        let k = "", v = f.type === "string" ? "" : undefined;
        while (!e.done()) {
          const ek = e.varint();
          if (ek === 10) k = fromUtf8.decode(e.take(e.varint()));
          else if (ek >>> 3 === 2) v = decodeValue(e, ek & 7, f.type);
          else e.skip(ek & 7);
        }
        o[f.name][k] = v;
      } else if (f.mode === "repeated") o[f.name].push(decodeValue(r, wire, f.type));
      else o[f.name] = decodeValue(r, wire, f.type);
    }
    return o;
  }

  // ---- gRPC-web ----

  class GrpcError extends Error {
    constructor(code, message) {
      super(message || `gRPC status ${code}`);
      this.name = "GrpcError";
      this.code = code;
    }
  }

  function frame(message) {
    const f = new Uint8Array(5 + message.length);
    new DataView(f.buffer).setUint32(1, message.length);
    f.set(message, 5);
    return f;
  }

  // "grpc-status: 0\r\ngrpc-message: ...\r\n" → Map of lower-case names.
  function parseTrailers(bytes) {
    const m = new Map();
    for (const line of fromUtf8.decode(bytes).split("\r\n")) {
      const i = line.indexOf(":");
      if (i > 0) m.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
    }
    return m;
  }

  function statusError(get) {
    const code = Number(get("grpc-status"));
    if (!code) return null;
    let message = get("grpc-message") || "";
    try { message = decodeURIComponent(message); } catch { /* keep as sent */ }
    return new GrpcError(code, message);
  }

  // Calls `path` ("/package.Service/Method") and hands each response message to
  // `onMessage`; resolves when the server ends the call with OK, rejects with a
  // GrpcError otherwise. `signal` (an AbortSignal) cancels a stream.
  async function call(path, reqSchema, request, resSchema, { token, signal, onMessage, base = "" } = {}) {
    const headers = {
      "content-type": "application/grpc-web+proto",
      "x-grpc-web": "1",
      accept: "application/grpc-web+proto",
    };
    if (token) headers.authorization = `Bearer ${token}`;
    const resp = await fetch(base + path, {
      method: "POST", headers, body: frame(encode(reqSchema, request)), signal,
    });
    if (!resp.ok) throw new GrpcError(14, `HTTP ${resp.status} from ${path}`);
    // A trailers-only answer (an error before any message) comes in the headers.
    const early = statusError((h) => resp.headers.get(h));
    if (early) throw early;
    const reader = resp.body.getReader();
    let buf = new Uint8Array(0);
    let trailers = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (value) {
        const joined = new Uint8Array(buf.length + value.length);
        joined.set(buf);
        joined.set(value, buf.length);
        buf = joined;
        while (buf.length >= 5) {
          const len = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
          if (buf.length < 5 + len) break;
          const flag = buf[0], body = buf.slice(5, 5 + len);
          buf = buf.slice(5 + len);
          if (flag & 0x80) trailers = parseTrailers(body);
          else if (flag & 0x01) throw new GrpcError(13, "compressed gRPC-web frames are not supported");
          else onMessage(decode(resSchema, body));
        }
      }
      if (done) break;
    }
    if (!trailers) {
      const fromHeaders = resp.headers.get("grpc-status");
      if (fromHeaders === null) throw new GrpcError(14, `${path}: the stream ended without a status`);
      return;
    }
    const err = statusError((h) => trailers.get(h));
    if (err) throw err;
  }

  // One request, one response.
  async function unary(path, reqSchema, request, resSchema, opts = {}) {
    let answer;
    await call(path, reqSchema, request, resSchema, { ...opts, onMessage: (m) => { answer = m; } });
    if (answer === undefined) throw new GrpcError(13, `${path}: no response message`);
    return answer;
  }

  // ---- the messages the pages use (proto/callcenter/*/v1/*.proto) ----

  const Empty = {};
  const agent = {};
  agent.LoginRequest = { agent_id: [1, "string"], password: [2, "string"] };
  agent.LoginResponse = { token: [1, "string"], expires_in_seconds: [2, "uint64"], status: [3, "enum"] };
  agent.SetStatusRequest = { status: [1, "enum"], break_reason: [2, "string"] };
  agent.StreamEventsRequest = { resume_after: [1, "uint64"] };
  agent.Customer = {
    id: [1, "string"], name: [2, "string"], phone_numbers: [3, "string", "repeated"],
    account: [4, "string"], attributes: [5, "string", "map"],
  };
  agent.Interaction = {
    id: [1, "string"], channel: [2, "string"], at_unix_ms: [3, "int64"], agent_id: [4, "string"],
    disposition: [5, "string"], notes: [6, "string"],
  };
  agent.ScreenPop = {
    caller_number: [1, "string"], customer: [2, agent.Customer],
    last_interactions: [3, agent.Interaction, "repeated"], ivr_answers: [4, "string", "map"],
    queue: [5, "string"], wait_ms: [6, "uint64"], script_id: [7, "string"],
    callback_number: [8, "string"],
  };
  agent.AgentEvent = {
    id: [1, "uint64"], at_unix_ms: [2, "int64"],
    call_offered: [10, { call_id: [1, "string"], screen_pop: [2, agent.ScreenPop], ring_timeout_ms: [3, "uint64"], preview: [4, "bool"] }],
    call_connected: [11, { call_id: [1, "string"] }],
    call_ended: [12, { call_id: [1, "string"], reason: [2, "string"] }],
    wrap_up_started: [13, { call_id: [1, "string"], duration_ms: [2, "uint64"] }],
    wrap_up_ended: [14, { call_id: [1, "string"], disposition_code: [2, "string"] }],
    status_changed: [15, { status: [1, "enum"], break_reason: [2, "string"] }],
    voicemail_task: [16, {
      task_id: [1, "string"], mailbox: [2, "string"], caller_number: [3, "string"],
      duration_ms: [4, "uint64"], left_at_unix_ms: [5, "int64"],
    }],
    events_lost: [17, { oldest_available: [1, "uint64"] }],
  };
  agent.CallRequest = { call_id: [1, "string"] };
  agent.DispositionRequest = { call_id: [1, "string"], code: [2, "string"], notes: [3, "string"], callback_at_unix_ms: [4, "int64"] };
  agent.TransferRequest = { call_id: [1, "string"], queue: [2, "string"], agent_id: [3, "string"], number: [4, "string"] };
  agent.SubmitAnswerRequest = { call_id: [1, "string"], answer: [2, "string"] };
  agent.ScriptStepView = {
    step: [1, "string"], kind: [2, "string"], text: [3, "string"], input: [4, "string"],
    choices: [5, { value: [1, "string"], label: [2, "string"] }, "repeated"], sensitive: [6, "bool"],
    json: [7, "string"],
  };
  agent.ScriptStepResponse = {
    script_id: [1, "string"], title: [2, "string"], steps: [3, agent.ScriptStepView, "repeated"],
    awaiting: [4, agent.ScriptStepView], outcome: [5, "string"], failure: [6, "string"],
  };
  agent.Status = { UNSPECIFIED: 0, AVAILABLE: 1, ON_BREAK: 2, LOGGED_OUT: 3 };
  agent.VoicemailMessage = {
    id: [1, "string"], mailbox: [2, "string"], caller_number: [3, "string"], duration_ms: [4, "uint64"],
    left_at_unix_ms: [5, "int64"], heard: [6, "bool"], handled_by: [7, "string"], outcome: [8, "string"],
  };
  agent.ListVoicemailResponse = { messages: [1, agent.VoicemailMessage, "repeated"] };
  agent.VoicemailMessageRequest = { message_id: [1, "string"] };
  agent.VoicemailAudio = { wav: [1, "bytes"] };

  const supervisor = {};
  supervisor.LoginRequest = { supervisor_id: [1, "string"], password: [2, "string"] };
  supervisor.LoginResponse = { token: [1, "string"], expires_in_seconds: [2, "uint64"] };
  supervisor.AgentView = {
    agent_id: [1, "string"], status: [2, "enum"], break_reason: [3, "string"], state: [4, "enum"],
    current_call_id: [5, "string"], time_in_state_ms: [6, "uint64"], queues: [7, "string", "repeated"],
  };
  supervisor.WaitingCall = { call_id: [1, "string"], caller_number: [2, "string"], wait_ms: [3, "uint64"] };
  supervisor.QueueView = {
    name: [1, "string"], waiting: [2, supervisor.WaitingCall, "repeated"], longest_wait_ms: [3, "uint64"],
    agents_logged_in: [4, "uint32"], agents_available: [5, "uint32"], service_level_today: [6, "double"],
    answered_today: [7, "uint32"], abandoned_today: [8, "uint32"],
    voicemail_tasks_waiting: [9, "uint32"], voicemail_tasks_today: [10, "uint32"],
  };
  supervisor.StatusUpdate = {
    at_unix_ms: [1, "int64"],
    snapshot: [10, { agents: [1, supervisor.AgentView, "repeated"], queues: [2, supervisor.QueueView, "repeated"] }],
    agent: [11, supervisor.AgentView],
    queue: [12, supervisor.QueueView],
  };
  supervisor.State = { UNSPECIFIED: 0, IDLE: 1, RINGING: 2, ON_CALL: 3, WRAP_UP: 4, RESTING: 5, RESERVED: 6 };
  supervisor.CampaignView = {
    name: [1, "string"], state: [2, "string"], mode: [3, "string"], queue: [4, "string"],
    contacts: [5, "uint32"], pending: [6, "uint32"], in_progress: [7, "uint32"], done: [8, "uint32"],
    attempts: [9, "uint32"], answered: [10, "uint32"], no_answer: [11, "uint32"], busy: [12, "uint32"],
    abandoned: [13, "uint32"], machine: [14, "uint32"], failed: [15, "uint32"], abandonment_rate: [16, "double"],
    agents: [17, "uint32"], dial_ratio: [18, "double"],
  };
  supervisor.StatusUpdate.campaigns = [13, { campaigns: [1, supervisor.CampaignView, "repeated"] }];
  supervisor.CampaignCommand = { START: 1, PAUSE: 2, RESUME: 3, STOP: 4 };
  supervisor.SetCampaignStateRequest = { campaign: [1, "string"], command: [2, "enum"] };
  supervisor.ReportKind = { CALLS: 1, AGENTS: 2, CAMPAIGNS: 3, IVR: 4, IVR_PATHS: 5, VOICEMAIL: 6 };
  supervisor.ReportRequest = {
    kind: [1, "enum"], from_unix_ms: [2, "int64"], to_unix_ms: [3, "int64"], only: [4, "string"],
    service_level_s: [5, "uint32"], short_abandon_s: [6, "uint32"], interval_s: [7, "uint32"],
  };
  // A oneof: only the member that arrived is set; none set means "no value".
  supervisor.ReportValue = {
    text: [1, "string", "optional"], count: [2, "uint64", "optional"],
    seconds: [3, "double", "optional"], ratio: [4, "double", "optional"],
  };
  supervisor.ReportResponse = {
    columns: [1, "string", "repeated"],
    rows: [2, { values: [1, supervisor.ReportValue, "repeated"] }, "repeated"],
  };

  const AGENT = "/callcenter.agent.v1.AgentService/";
  const SUPERVISOR = "/callcenter.supervisor.v1.SupervisorService/";

  // The RPCs the pages call, by name.
  const api = {
    agentLogin: (req, o) => unary(AGENT + "Login", agent.LoginRequest, req, agent.LoginResponse, o),
    agentLogout: (o) => unary(AGENT + "Logout", Empty, {}, Empty, o),
    setStatus: (req, o) => unary(AGENT + "SetStatus", agent.SetStatusRequest, req, Empty, o),
    streamEvents: (req, o) => call(AGENT + "StreamEvents", agent.StreamEventsRequest, req, agent.AgentEvent, o),
    hangUp: (req, o) => unary(AGENT + "HangUp", agent.CallRequest, req, Empty, o),
    previewDial: (req, o) => unary(AGENT + "PreviewDial", agent.CallRequest, req, Empty, o),
    previewSkip: (req, o) => unary(AGENT + "PreviewSkip", agent.CallRequest, req, Empty, o),
    disposition: (req, o) => unary(AGENT + "Disposition", agent.DispositionRequest, req, Empty, o),
    hold: (req, o) => unary(AGENT + "Hold", agent.CallRequest, req, Empty, o),
    unhold: (req, o) => unary(AGENT + "Unhold", agent.CallRequest, req, Empty, o),
    // `req.queue`, `req.agent_id` or `req.number`: the oneof's one target.
    transfer: (req, o) => unary(AGENT + "Transfer", agent.TransferRequest, req, Empty, o),
    scriptStep: (req, o) => unary(AGENT + "ScriptStep", agent.CallRequest, req, agent.ScriptStepResponse, o),
    submitAnswer: (req, o) => unary(AGENT + "SubmitAnswer", agent.SubmitAnswerRequest, req, agent.ScriptStepResponse, o),
    listVoicemail: (o) => unary(AGENT + "ListVoicemail", Empty, {}, agent.ListVoicemailResponse, o),
    getVoicemailAudio: (req, o) =>
      unary(AGENT + "GetVoicemailAudio", agent.VoicemailMessageRequest, req, agent.VoicemailAudio, o),
    markVoicemailHeard: (req, o) =>
      unary(AGENT + "MarkVoicemailHeard", agent.VoicemailMessageRequest, req, Empty, o),
    deleteVoicemail: (req, o) => unary(AGENT + "DeleteVoicemail", agent.VoicemailMessageRequest, req, Empty, o),
    supervisorLogin: (req, o) =>
      unary(SUPERVISOR + "Login", supervisor.LoginRequest, req, supervisor.LoginResponse, o),
    supervisorLogout: (o) => unary(SUPERVISOR + "Logout", Empty, {}, Empty, o),
    streamStatus: (o) => call(SUPERVISOR + "StreamStatus", Empty, {}, supervisor.StatusUpdate, o),
    getReport: (req, o) => unary(SUPERVISOR + "GetReport", supervisor.ReportRequest, req, supervisor.ReportResponse, o),
    setCampaignState: (req, o) =>
      unary(SUPERVISOR + "SetCampaignState", supervisor.SetCampaignStateRequest, req, Empty, o),
  };

  root.GrpcWeb = { encode, decode, call, unary, frame, GrpcError, agent, supervisor, api };
})(globalThis);
