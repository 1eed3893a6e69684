// Running models: state with launch progress, engine, replicas, memory, the log tail; terminate.

import { api, get } from "./api.js";
import { $, bytes, el, errorText, notify, size } from "./dom.js";

const LOADING = new Set(["creating", "downloading", "installing", "loading"]);
const POLL_MS = 2000;
let timer = null;
const openLogs = new Set(); // uids whose log tail is shown

export function show() {
  refresh();
}

export function hide() {
  clearTimeout(timer);
  timer = null;
}

export async function list() {
  return (await get("/v1/models")).data;
}

async function refresh() {
  clearTimeout(timer);
  try {
    const records = await list();
    await render(records);
  } catch (err) {
    notify(errorText(err));
  }
  if (!$("#page-models").hidden) timer = setTimeout(refresh, POLL_MS);
}

async function render(records) {
  $("#models-empty").hidden = records.length > 0;
  const cards = await Promise.all(records.map(card));
  $("#model-cards").replaceChildren(...cards);
}

function progressLine(record) {
  if (!LOADING.has(record.state)) return null;
  const percent = Math.round((record.progress || 0) * 100);
  return el(
    "div",
    { class: "progress-line" },
    el("progress", { max: 1, value: record.progress || 0, "aria-label": `${record.id} ${record.state}` }),
    ` ${record.state} ${percent}%`,
  );
}

// "2 of 2 ready: 0 ready on 10.0.0.2, 1 ready": each replica's state and node (none: this machine).
function replicas(record) {
  const each = record.replicas ?? [];
  const ready = each.filter((r) => r.state === "ready").length;
  const places = each.map((r) => `${r.index} ${r.state}${r.node ? ` on ${r.node}` : ""}`).join(", ");
  return `${ready} of ${record.replica ?? 1} ready${places ? `: ${places}` : ""}`;
}

async function card(record) {
  const uid = record.id;
  const memory =
    `${bytes(record.resident_memory_bytes)} used` +
    (record.memory_estimate ? ` (estimated ${bytes(record.memory_estimate)})` : "");
  const facts = [
    ["Model", `${record.model_name} · ${record.model_format ?? "?"} · ${size(record.model_size_in_billions)}B · ${record.quantization ?? ""}`],
    ["Engine", record.model_engine ?? "not chosen yet"],
    ["Replicas", replicas(record)],
    ["Memory", memory],
    ["Context", record.context_length ?? "unknown"],
  ];
  const logs = openLogs.has(uid) ? await logTail(uid) : null;
  return el(
    "article",
    { class: "card", "aria-label": `Model ${uid}` },
    el("header", {}, el("h2", {}, uid), el("span", { class: `state state-${record.state}` }, record.state)),
    progressLine(record),
    record.error ? el("p", { class: "error" }, record.error) : null,
    el("dl", {}, facts.map(([term, value]) => [el("dt", {}, term), el("dd", {}, String(value))])),
    el(
      "div",
      { class: "actions" },
      el("button", {
        type: "button",
        class: "secondary",
        "aria-expanded": openLogs.has(uid) ? "true" : "false",
        "aria-label": `${openLogs.has(uid) ? "Hide" : "Show"} log of ${uid}`,
        onclick: () => {
          if (openLogs.has(uid)) openLogs.delete(uid);
          else openLogs.add(uid);
          refresh();
        },
        text: openLogs.has(uid) ? "Hide log" : "Show log",
      }),
      el("a", { class: "button secondary", href: `#playground?model=${encodeURIComponent(uid)}`, text: "Try it" }),
      el("button", {
        type: "button",
        class: "danger",
        "aria-label": `Terminate ${uid}`,
        onclick: (event) => terminate(uid, event.currentTarget),
        text: "Terminate",
      }),
    ),
    logs,
  );
}

async function logTail(uid) {
  try {
    const { lines } = await get(`/v1/models/${encodeURIComponent(uid)}/logs?lines=40`);
    return el("pre", { class: "log", "aria-label": `Log of ${uid}`, tabindex: 0 }, lines.join("\n") || "(no output yet)");
  } catch (err) {
    return el("p", { class: "error" }, errorText(err));
  }
}

async function terminate(uid, button) {
  button.disabled = true;
  button.textContent = "Terminating…";
  try {
    await api("DELETE", `/v1/models/${encodeURIComponent(uid)}`);
    openLogs.delete(uid);
    notify("");
  } catch (err) {
    notify(errorText(err));
  }
  refresh();
}
