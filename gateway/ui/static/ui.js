// topicbridge admin UI: the parts of the pages that need a browser. Plain JS, no build step.
"use strict";

const MAX_ROWS = 200;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function stateName(state) {
  return String(state || "").replace(/^TASK_STATE_/, "").toLowerCase();
}

function partsText(parts) {
  return (parts || []).map(p => p.text !== undefined ? p.text : (p.data !== undefined ? JSON.stringify(p.data) : (p.url || "<part>"))).join("\n");
}

// Reads a text/event-stream response body; calls onEvent(name, data) for each event.
async function readSSE(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message", data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      const text = data.join("\n");
      if (text.trim()) onEvent(name, text);       // an event without data (a resumption point) carries nothing
    }
  }
}

// One line of a timeline for an A2A StreamResponse (ProtoJSON).
function describeEvent(event) {
  if (event.task) return ["task", stateName(event.task.status && event.task.status.state), partsText(event.task.status && event.task.status.message && event.task.status.message.parts)];
  if (event.statusUpdate) { const s = event.statusUpdate.status || {}; return ["status", stateName(s.state), partsText(s.message && s.message.parts)]; }
  if (event.artifactUpdate) { const a = event.artifactUpdate.artifact || {}; return ["artifact", a.name || a.artifactId || "artifact", partsText(a.parts)]; }
  if (event.message) return ["message", event.message.role === "ROLE_USER" ? "user" : "agent", partsText(event.message.parts)];
  return ["event", "?", JSON.stringify(event)];
}

function timelineItem(kind, who, text) {
  return el("li", { class: kind === "task" || kind === "status" ? "status" : kind },
            el("span", { class: "who" }, `${kind}: ${who}`), el("pre", {}, text || ""));
}

// ---------------------------------------------------------------- capabilities

function confirmForms() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", e => { if (!window.confirm(form.dataset.confirm)) e.preventDefault(); });
  }
}

// ---------------------------------------------------------------- live tasks

function liveTasks() {
  const table = document.getElementById("tasks");
  if (!table) return;
  const body = table.tBodies[0], status = document.getElementById("live-status");
  const query = new URLSearchParams();
  if (table.dataset.capability) query.set("capability", table.dataset.capability);
  if (table.dataset.state) query.set("state", table.dataset.state);
  const source = new EventSource("/admin/tasks/live?" + query);
  source.onopen = () => { status.textContent = "live"; };
  source.onerror = () => { status.textContent = "reconnecting…"; };
  source.addEventListener("task", e => {
    const t = JSON.parse(e.data);
    const old = body.querySelector(`tr[data-id="${CSS.escape(t.id)}"]`);
    const link = el("a", { href: "/admin/ui/tasks/" + encodeURIComponent(t.id) }, t.id);
    const row = el("tr", { "data-id": t.id, "data-state": t.state },
      el("th", { scope: "row" }, link), el("td", {}, t.capability),
      el("td", {}, el("span", { class: "badge " + t.state }, t.state)), el("td", {}, t.updated || ""),
      el("td", {}, String(t.artifacts)), el("td", {}, t.message || ""));
    if (old) old.remove();
    body.prepend(row);
    while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
  });
}

// ---------------------------------------------------------------- one task

function taskPage() {
  const timeline = document.getElementById("timeline");
  const cancel = document.getElementById("cancel-form");
  if (cancel) {
    cancel.addEventListener("submit", async e => {
      e.preventDefault();
      const response = await fetch(cancel.action, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
      if (!response.ok) { const doc = await response.json().catch(() => ({})); window.alert((doc.error && doc.error.message) || response.statusText); }
    });
  }
  if (!timeline || timeline.dataset.live !== "yes") return;
  const state = document.getElementById("task-state");
  const source = new EventSource("/admin/tasks/" + encodeURIComponent(timeline.dataset.task) + "/events");
  let first = true;
  source.addEventListener("event", e => {
    const event = JSON.parse(e.data);
    if (first && event.task) {          // the task as it is now: news only if it moved on since the page was made
      first = false;
      const s = event.task.status || {};
      const text = partsText(s.message && s.message.parts);
      if (stateName(s.state) === timeline.dataset.state && text === timeline.dataset.text) return;
      state.textContent = stateName(s.state); state.className = "badge " + stateName(s.state);
    }
    const [kind, who, text] = describeEvent(event);
    timeline.append(timelineItem(kind, who, text));
    if (event.statusUpdate) { const s = stateName(event.statusUpdate.status.state); state.textContent = s; state.className = "badge " + s; }
    if (event.artifactUpdate) {
      const a = event.artifactUpdate.artifact || {};
      document.getElementById("artifacts").append(el("li", {}, el("strong", {}, a.name || a.artifactId || ""), el("pre", {}, partsText(a.parts))));
    }
  });
  source.addEventListener("end", () => { source.close(); if (cancel) cancel.hidden = true; });
}

// ---------------------------------------------------------------- playground

function playground() {
  const form = document.getElementById("playground");
  if (!form) return;
  const events = document.getElementById("p-events"), state = document.getElementById("p-state");
  form.addEventListener("submit", async e => {
    e.preventDefault();
    const name = form.capability.value, text = form.text.value;
    events.replaceChildren();
    state.textContent = "sending…";
    const message = { messageId: crypto.randomUUID(), role: "ROLE_USER", parts: [{ text }] };
    let response;
    try {
      response = await fetch(`/agents/${encodeURIComponent(name)}/message:stream`, {
        method: "POST", body: JSON.stringify({ message }),
        headers: { "Content-Type": "application/json", "Accept": "text/event-stream", "A2A-Version": "1.0" } });
    } catch (err) { state.textContent = "failed: " + err; return; }
    if (!response.ok) { state.textContent = `HTTP ${response.status}: ` + (await response.text()).slice(0, 500); return; }
    let last = "";
    await readSSE(response, (_, data) => {
      const event = JSON.parse(data);
      const [kind, who, body] = describeEvent(event);
      const item = timelineItem(kind, who, body);
      const taskId = (event.task && event.task.id) || (event.statusUpdate && event.statusUpdate.taskId);
      if (taskId && !document.getElementById("p-task-link")) {
        state.before(el("p", { id: "p-task-link" }, "Task: ", el("a", { href: "/admin/ui/tasks/" + encodeURIComponent(taskId) }, taskId)));
      }
      events.append(item);
      if (kind === "task" || kind === "status") last = who;
      state.textContent = last ? "state: " + last : "streaming…";
    });
    state.textContent = "stream ended: " + (last || "no state");
    state.dataset.final = last;
  });
}

// MCP 2025-11-25 over streamable HTTP: initialize, initialized, tools/list.
async function mcpCall(session, token, body) {
  const headers = { "Content-Type": "application/json", "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25" };
  if (session) headers["Mcp-Session-Id"] = session;
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch("/mcp", { method: "POST", headers, body: JSON.stringify(body) });
  if (!response.ok && response.status !== 202) throw new Error(`HTTP ${response.status}: ${(await response.text()).slice(0, 300)}`);
  const sessionId = response.headers.get("Mcp-Session-Id") || session;
  if (body.id === undefined) return { sessionId };
  let answer = null;
  if ((response.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
    await readSSE(response, (_, data) => { const doc = JSON.parse(data); if (doc.id === body.id) answer = doc; });
  } else answer = await response.json();
  if (!answer) throw new Error("no answer to " + body.method);
  if (answer.error) throw new Error(answer.error.message);
  return { sessionId, result: answer.result };
}

function mcpTools() {
  const form = document.getElementById("mcp-form");
  if (!form) return;
  const list = document.getElementById("mcp-tools"), state = document.getElementById("mcp-state");
  const run = async () => {
    const token = document.getElementById("mcp-token").value.trim();
    state.textContent = "connecting…";
    try {
      const init = await mcpCall(null, token, { jsonrpc: "2.0", id: 1, method: "initialize", params: {
        protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "topicbridge-admin-ui", version: "1" } } });
      await mcpCall(init.sessionId, token, { jsonrpc: "2.0", method: "notifications/initialized" });
      const tools = [];
      let cursor;
      do {
        const page = await mcpCall(init.sessionId, token, { jsonrpc: "2.0", id: 2 + tools.length, method: "tools/list", params: cursor ? { cursor } : {} });
        tools.push(...page.result.tools);
        cursor = page.result.nextCursor;
      } while (cursor && tools.length < 1000);
      list.replaceChildren(...tools.map(t => el("li", { "data-tool": t.name }, el("code", {}, t.name), " — ", (t.description || "").split("\n")[0])));
      state.textContent = `${tools.length} tools`;
      if (init.sessionId) fetch("/mcp", { method: "DELETE", headers: Object.assign({ "Mcp-Session-Id": init.sessionId }, token ? { Authorization: "Bearer " + token } : {}) }).catch(() => {});
    } catch (err) { state.textContent = "MCP: " + err.message; }
  };
  form.addEventListener("submit", e => { e.preventDefault(); run(); });
  run();
}

// ---------------------------------------------------------------- status

async function metrics() {
  const table = document.getElementById("metrics");
  if (!table) return;
  const state = document.getElementById("metrics-state");
  const response = await fetch("/metrics").catch(() => null);
  if (!response || !response.ok) { state.textContent = "No metrics here (/metrics " + (response ? "answered HTTP " + response.status : "is unreachable") + ")."; return; }
  const rows = [];
  for (const line of (await response.text()).split("\n")) {
    const m = /^(topicbridge_[A-Za-z0-9_:]+)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && !m[1].endsWith("_bucket") && !m[1].endsWith("_created")) rows.push(el("tr", {}, el("th", { scope: "row" }, m[1]), el("td", {}, el("code", {}, m[2] || "")), el("td", {}, m[3])));
  }
  table.tBodies[0].replaceChildren(...rows.slice(0, 500));
  table.hidden = false;
  state.textContent = `${rows.length} series from /metrics`;
}

document.addEventListener("DOMContentLoaded", () => {
  confirmForms(); liveTasks(); taskPage(); playground(); mcpTools(); metrics();
});
