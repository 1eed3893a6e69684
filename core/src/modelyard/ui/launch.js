// The launch form: the core's fields, engine parameters (dotted names included), live progress,
// and the server's refusal shown beside the field it names (`error.param`).

import { api, get } from "./api.js";
import { $, el, errorText, notify, say } from "./dom.js";

const FIELDS = ["model_name", "model_type", "model_engine", "model_format", "model_size_in_billions", "quantization", "model_uid", "replica"];
const form = $("#launch-form");
let rows = 0;
let pending = null; // values to put in the form when it next shows

export function prefill(values) {
  pending = values;
}

export async function show() {
  if (pending) {
    for (const name of FIELDS) $(`#launch-${name}`).value = pending[name] ?? (name === "replica" ? "1" : "");
    pending = null;
  }
  try {
    const [plugins, lists] = await Promise.all([
      get("/v1/plugins"),
      Promise.all(["LLM", "embedding", "rerank"].map((t) => get(`/v1/model_registrations/${t}`))),
    ]);
    const engine = $("#launch-model_engine");
    const chosen = engine.value;
    engine.replaceChildren(
      el("option", { value: "" }, "chosen by the server"),
      ...plugins.engines.map((e) => el("option", { value: e.name }, e.name)),
    );
    engine.value = chosen;
    $("#model-names").replaceChildren(...lists.flat().map((f) => el("option", { value: f.model_name })));
  } catch (err) {
    notify(errorText(err));
  }
}

function addParam(name = "", value = "") {
  rows += 1;
  const n = rows;
  const row = el(
    "div",
    { class: "param-row", id: `param-row-${n}` },
    el("div", { class: "field" }, el("label", { for: `param-name-${n}` }, `Parameter ${n} name`),
      el("input", { id: `param-name-${n}`, class: "param-name", value: name, autocomplete: "off", placeholder: "e.g. n_ctx" })),
    el("div", { class: "field" }, el("label", { for: `param-value-${n}` }, `Parameter ${n} value`),
      el("input", { id: `param-value-${n}`, class: "param-value", value: value, autocomplete: "off", placeholder: "e.g. 4096" })),
    el("button", { type: "button", class: "secondary", "aria-label": `Remove parameter ${n}`, onclick: () => row.remove() }, "Remove"),
    el("p", { class: "error field-error", id: `param-error-${n}`, hidden: true }),
  );
  $("#param-rows").append(row);
  return row;
}
$("#add-param").addEventListener("click", () => addParam().querySelector("input").focus());

// "8192" → 8192, "true" → true, "[1,2]" → [1, 2]; anything else stays text.
function paramValue(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function payload() {
  const body = {};
  for (const name of FIELDS) {
    const value = $(`#launch-${name}`).value.trim();
    if (value === "") continue;
    body[name] = name === "replica" ? Number(value) : value;
  }
  for (const row of document.querySelectorAll(".param-row")) {
    const name = row.querySelector(".param-name").value.trim();
    if (name) body[name] = paramValue(row.querySelector(".param-value").value.trim());
  }
  return body;
}

function clearErrors() {
  for (const node of form.querySelectorAll(".field-error")) {
    if (node.closest(".param-row")) say(node, "");
    else node.remove();
  }
  for (const node of form.querySelectorAll("[aria-invalid]")) {
    node.removeAttribute("aria-invalid");
    node.removeAttribute("aria-describedby");
  }
  say($("#launch-error"), "");
}

// Put the message beside the input the server named: a core field, or an engine parameter row
// (msgspec paths such as "replica" or "params.n_ctx" name it too).
function showFieldError(param, message) {
  const name = (param || "").replace(/^params\./, "");
  let input = FIELDS.includes(name) ? $(`#launch-${name}`) : null;
  let box = null;
  if (input) {
    box = el("p", { class: "error field-error", id: `launch-${name}-error` });
    input.closest(".field").append(box);
  } else if (name) {
    for (const row of document.querySelectorAll(".param-row")) {
      if (row.querySelector(".param-name").value.trim() === name) {
        input = row.querySelector(".param-value");
        box = row.querySelector(".field-error");
      }
    }
  }
  if (!input) return false;
  say(box, message);
  input.setAttribute("aria-invalid", "true");
  input.setAttribute("aria-describedby", box.id);
  input.focus();
  return true;
}

// While the launch request waits, show how far the model got (download, load).
function watchProgress(body) {
  const bar = $("#launch-progress");
  bar.hidden = false;
  bar.value = 0;
  let stopped = false;
  (async function poll() {
    while (!stopped) {
      try {
        const records = (await get("/v1/models")).data;
        const mine = records.find((r) => r.id === body.model_uid) ||
          records.find((r) => r.model_name === body.model_name && r.state !== "ready");
        if (mine && !stopped) {
          bar.value = mine.progress || 0;
          say($("#launch-status"), `${mine.id}: ${mine.state} ${Math.round((mine.progress || 0) * 100)}%`);
        }
      } catch {
        // the launch request itself reports failures
      }
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
  })();
  return () => {
    stopped = true;
    bar.hidden = true;
  };
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors();
  const body = payload();
  if (!body.model_name) {
    showFieldError("model_name", "Name the model to launch (see the catalog).");
    return;
  }
  const submit = $("#launch-submit");
  submit.disabled = true;
  say($("#launch-status"), `Launching ${body.model_name}…`);
  const stop = watchProgress(body);
  try {
    const { model_uid } = await api("POST", "/v1/models", body);
    stop();
    $("#launch-status").replaceChildren(
      `Launched ${model_uid}. `,
      el("a", { href: `#playground?model=${encodeURIComponent(model_uid)}` }, "Try it"),
      " or see it under ",
      el("a", { href: "#models" }, "Running"),
      ".",
    );
  } catch (err) {
    stop();
    say($("#launch-status"), "");
    if (!showFieldError(err.param, errorText(err))) say($("#launch-error"), errorText(err));
  } finally {
    submit.disabled = false;
  }
});
