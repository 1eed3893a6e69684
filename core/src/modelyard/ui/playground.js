// The playground: streaming chat with time to first token and tokens per second, and embeddings
// and rerank try-outs, against a running model.

import { api, get, stream } from "./api.js";
import { $, el, errorText, notify, say } from "./dom.js";

const history = []; // the conversation, without the system prompt
let controller = null; // aborts the stream in flight

export async function show() {
  await refreshModels();
}

async function refreshModels() {
  const wanted = new URLSearchParams(location.hash.split("?")[1] || "").get("model");
  const select = $("#play-model");
  const previous = wanted || select.value;
  try {
    const records = (await get("/v1/models")).data.filter((r) => r.state === "ready");
    select.replaceChildren(
      ...records.map((r) => el("option", { value: r.id }, `${r.id} (${r.model_type}, ${r.model_engine})`)),
    );
    if (records.some((r) => r.id === previous)) select.value = previous;
    if (!records.length) select.append(el("option", { value: "" }, "no model is ready: launch one"));
    notify("");
  } catch (err) {
    notify(errorText(err));
  }
}
$("#play-refresh").addEventListener("click", refreshModels);

// Tabs: arrow keys move between them (WAI-ARIA tabs pattern).
const tabs = [...document.querySelectorAll('[role="tab"]')];
function selectTab(tab) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(`#${t.getAttribute("aria-controls")}`).hidden = !on;
  }
}
for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (event) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    const next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
    selectTab(next);
    next.focus();
  });
}

function number(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : Number(value);
}

function bubble(role, text) {
  const body = el("div", { class: "text" }, text);
  $("#chat-log").append(el("div", { class: `msg msg-${role}` }, el("span", { class: "role" }, role), body));
  return body;
}

function busy(on) {
  $("#chat-send").disabled = on;
  $("#chat-stop").disabled = !on;
}

async function sendChat(event) {
  event.preventDefault();
  const model = $("#play-model").value;
  const text = $("#chat-message").value.trim();
  say($("#chat-error"), "");
  if (!model) return say($("#chat-error"), "No model is ready: launch one, then press Refresh list.");
  if (!text) return say($("#chat-error"), "Write a message first.");
  history.push({ role: "user", content: text });
  bubble("user", text);
  $("#chat-message").value = "";
  const answer = bubble("assistant", "");
  const system = $("#chat-system").value.trim();
  const body = {
    model,
    stream: true,
    stream_options: { include_usage: true },
    messages: [...(system ? [{ role: "system", content: system }] : []), ...history],
    temperature: number("#chat-temperature"),
    top_p: number("#chat-top_p"),
    max_tokens: number("#chat-max_tokens"),
  };
  controller = new AbortController();
  busy(true);
  const started = performance.now();
  let first = null;
  let pieces = 0;
  let usage = null;
  $("#chat-stats").textContent = "Waiting for the first token…";
  const stats = () => {
    const now = performance.now();
    const tokens = usage?.completion_tokens ?? pieces;
    const seconds = (now - first) / 1000;
    const rate = seconds > 0 && tokens > 1 ? ` · ${((tokens - 1) / seconds).toFixed(1)} tokens/s` : "";
    $("#chat-stats").textContent = `Time to first token ${Math.round(first - started)} ms${rate} · ${tokens} tokens`;
  };
  try {
    await stream("/v1/chat/completions", body, (chunk) => {
      if (chunk.usage) usage = chunk.usage;
      const delta = chunk.choices?.[0]?.delta?.content;
      if (!delta) return;
      if (first === null) first = performance.now();
      pieces += 1;
      answer.textContent += delta;
      stats();
    }, { signal: controller.signal });
    if (first !== null) stats();
    history.push({ role: "assistant", content: answer.textContent });
  } catch (err) {
    if (err.name === "AbortError") {
      say($("#chat-error"), "Stopped.");
    } else {
      say($("#chat-error"), `${errorText(err)}${answer.textContent ? " (the partial answer is kept above)" : ""}`);
    }
    if (answer.textContent) history.push({ role: "assistant", content: answer.textContent });
    else history.pop();
  } finally {
    controller = null;
    busy(false);
    $("#chat-message").focus();
  }
}
$("#chat-form").addEventListener("submit", sendChat);
$("#chat-message").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("#chat-form").requestSubmit();
});
$("#chat-stop").addEventListener("click", () => controller?.abort());
$("#chat-clear").addEventListener("click", () => {
  history.length = 0;
  $("#chat-log").replaceChildren();
  $("#chat-stats").textContent = "";
  say($("#chat-error"), "");
});

const lines = (id) => $(id).value.split("\n").map((l) => l.trim()).filter(Boolean);

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

$("#embed-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  say($("#embed-error"), "");
  const texts = lines("#embed-input");
  try {
    const answer = await api("POST", "/v1/embeddings", { model: $("#play-model").value, input: texts });
    const vectors = answer.data.map((d) => d.embedding);
    const head = el("tr", {}, el("th", { scope: "col" }, "Cosine similarity"), texts.map((t, i) => el("th", { scope: "col" }, `#${i + 1}`)));
    const rows = texts.map((t, i) =>
      el("tr", {}, el("th", { scope: "row" }, `#${i + 1} ${t}`), vectors.map((v) => el("td", {}, cosine(vectors[i], v).toFixed(3)))));
    $("#embed-result").replaceChildren(
      el("p", {}, `${vectors.length} vectors of ${vectors[0]?.length ?? 0} dimensions.`),
      el("table", { class: "matrix" }, el("thead", {}, head), el("tbody", {}, rows)),
    );
  } catch (err) {
    say($("#embed-error"), errorText(err));
  }
});

$("#rerank-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  say($("#rerank-error"), "");
  const documents = lines("#rerank-docs");
  try {
    const answer = await api("POST", "/v1/rerank", {
      model: $("#play-model").value,
      query: $("#rerank-query").value,
      documents,
      return_documents: true,
    });
    $("#rerank-result").replaceChildren(
      ...answer.results.map((r) => el("li", {}, `${r.relevance_score.toFixed(3)} · ${documents[r.index]}`)),
    );
  } catch (err) {
    say($("#rerank-error"), errorText(err));
  }
});
