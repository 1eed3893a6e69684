// The catalog: search and filter the families, and for one family its specs, which engine runs
// each here (and why the others do not), and the memory estimate at a context and parallelism.

import { get } from "./api.js";
import { $, bytes, el, errorText, notify, size } from "./dom.js";
import { prefill } from "./launch.js";

export const TYPES = ["LLM", "embedding", "rerank"];
let families = null; // every family, loaded once per page view
let selected = null;

export async function loadFamilies() {
  const lists = await Promise.all(
    TYPES.map((type) => get(`/v1/model_registrations/${type}?detailed=true`)),
  );
  return lists.flat().filter((family) => !family.broken);
}

export async function show() {
  try {
    families = await loadFamilies();
    notify("");
  } catch (err) {
    notify(errorText(err));
    families = [];
  }
  fillFilter("ability", families.flatMap((f) => f.model_ability || []));
  fillFilter("format", families.flatMap((f) => f.model_specs.map((s) => s.model_format)));
  renderList();
}

function fillFilter(name, values) {
  const select = $(`#catalog-filters [name=${name}]`);
  const chosen = select.value;
  const options = [...new Set(values)].sort().map((v) => el("option", { value: v }, v));
  select.replaceChildren(el("option", { value: "" }, "any"), ...options);
  select.value = chosen;
}

function matches(family, filters) {
  const q = filters.q.trim().toLowerCase();
  if (q && !`${family.model_name} ${family.model_description ?? ""}`.toLowerCase().includes(q)) return false;
  if (filters.type && family.model_type !== filters.type) return false;
  if (filters.ability && !(family.model_ability || []).includes(filters.ability)) return false;
  if (filters.format && !family.model_specs.some((s) => s.model_format === filters.format)) return false;
  return true;
}

function renderList() {
  const filters = Object.fromEntries(new FormData($("#catalog-filters")));
  const shown = (families || []).filter((f) => matches(f, filters));
  const items = shown.map((family) =>
    el(
      "li",
      {},
      el(
        "button",
        {
          type: "button",
          class: "family",
          "aria-pressed": selected === family.model_name ? "true" : "false",
          onclick: () => showFamily(family),
        },
        el("strong", {}, family.model_name),
        el("span", { class: "muted" }, ` ${family.model_type} · ${(family.model_ability || []).join(", ")}`),
      ),
    ),
  );
  $("#family-list").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "No model matches.")]));
}

$("#catalog-filters").addEventListener("input", renderList);
$("#catalog-filters").addEventListener("submit", (event) => event.preventDefault());

// One row per (format, size, quantization): the choices a launch or an estimate takes.
function specChoices(family) {
  return family.model_specs.flatMap((spec) =>
    (spec.quantizations || []).map((quantization) => ({
      model_format: spec.model_format,
      size: spec.model_size_in_billions,
      quantization,
    })),
  );
}

async function showFamily(family) {
  selected = family.model_name;
  renderList();
  const detail = $("#family-detail");
  const choices = specChoices(family);
  const choiceLabel = (c) => `${c.model_format} · ${size(c.size)}B · ${c.quantization}`;
  const estimate = el("div", { id: "estimate-result", "aria-live": "polite" });
  const form = el(
    "form",
    { class: "estimate", "aria-label": "Memory estimate", onsubmit: (e) => (e.preventDefault(), runEstimate()) },
    el("h3", {}, "Memory estimate"),
    el(
      "div",
      { class: "grid" },
      el("div", { class: "field" }, el("label", { for: "est-spec" }, "Spec"),
        el("select", { id: "est-spec", onchange: () => runEstimate() }, choices.map((c, i) => el("option", { value: i }, choiceLabel(c))))),
      el("div", { class: "field" }, el("label", { for: "est-context" }, "Context length"),
        el("input", { id: "est-context", type: "number", min: 1, value: Math.min(family.context_length || 4096, 4096) })),
      el("div", { class: "field" }, el("label", { for: "est-parallel" }, "Parallel requests"),
        el("input", { id: "est-parallel", type: "number", min: 1, value: 1 })),
    ),
    el("div", { class: "actions" },
      el("button", { type: "submit" }, "Estimate"),
      el("button", { type: "button", class: "secondary", onclick: () => launchChoice() }, "Launch this spec…")),
    estimate,
  );
  const engines = el("div", { "aria-live": "polite" }, el("p", { class: "muted" }, "Asking the engines…"));
  detail.replaceChildren(
    el("h2", {}, family.model_name),
    el("p", {}, family.model_description || ""),
    el("p", { class: "muted" },
      `${family.model_type} · abilities: ${(family.model_ability || []).join(", ") || "none"}` +
        (family.context_length ? ` · context ${family.context_length}` : "")),
    el("h3", {}, "Engines on this machine"),
    engines,
    form,
  );

  const current = () => choices[Number($("#est-spec").value)];
  async function runEstimate() {
    const c = current();
    const query = new URLSearchParams({
      model_type: family.model_type,
      model_format: c.model_format,
      size: String(c.size),
      quantization: c.quantization,
      context_length: $("#est-context").value,
      parallel: $("#est-parallel").value,
    });
    estimate.replaceChildren(el("p", { class: "muted" }, "Estimating…"));
    try {
      const answer = await get(`/v1/cal_model_mem/${encodeURIComponent(family.model_name)}?${query}`);
      estimate.replaceChildren(estimateTable(answer));
      markChosen(engines, answer.engine);
    } catch (err) {
      estimate.replaceChildren(el("p", { class: "error", role: "alert" }, errorText(err)));
    }
  }
  function launchChoice() {
    const c = current();
    prefill({
      model_name: family.model_name,
      model_type: family.model_type,
      model_format: c.model_format,
      model_size_in_billions: String(c.size).replace(".", "_"),
      quantization: c.quantization,
    });
    location.hash = "#launch";
  }

  try {
    const table = await get(`/v1/engines/${family.model_type}/${encodeURIComponent(family.model_name)}`);
    engines.replaceChildren(engineTable(table));
  } catch (err) {
    engines.replaceChildren(el("p", { class: "error", role: "alert" }, errorText(err)));
  }
  if (choices.length) runEstimate();
}

// The engine a launch of the selected spec would get (the estimate's answer), marked in the table.
function markChosen(container, engine) {
  for (const row of container.querySelectorAll("tbody tr")) {
    const chosen = row.dataset.engine === engine;
    row.classList.toggle("chosen", chosen);
    row.querySelector(".choice").textContent = chosen ? "chosen for the selected spec" : "";
  }
}

// The server lists engines in the order it prefers them: the first that runs a spec is chosen.
function engineTable(table) {
  const rows = Object.entries(table).map(([engine, answer]) => {
    const runs = Array.isArray(answer);
    const what = runs
      ? answer.map((s) => `${s.model_format} ${size(s.model_size_in_billions)}B (${(s.quantizations || []).join(", ")})`).join("; ")
      : answer;
    return el("tr", { "data-engine": engine },
      el("th", { scope: "row" }, engine, el("span", { class: "choice" })),
      el("td", { class: runs ? "yes" : "no" }, runs ? "yes" : "no"),
      el("td", {}, what));
  });
  return el("table", { class: "engines" },
    el("caption", {}, "Which engine can run it here (in the order the server prefers them), and why not"),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Engine"), el("th", { scope: "col" }, "Runs here"),
      el("th", { scope: "col" }, "Specs it runs, or why not"))),
    el("tbody", {}, rows));
}

function estimateTable(e) {
  const rows = [
    ["Engine", e.engine ?? "none can run it here (generic estimate)"],
    ["Weights", bytes(e.weights)],
    ["KV cache", `${bytes(e.kv_cache)}` + (e.context_length ? ` (context ${e.context_length}, ${e.parallel} parallel)` : "")],
    ["Overhead", bytes(e.overhead)],
    ["Total", bytes(e.total)],
    ["Device", e.device + (e.gpu_layers !== null && e.gpu_layers !== undefined ? ` (${e.gpu_layers}/${e.total_layers} layers on GPU)` : "")],
  ];
  return el("div", {},
    el("dl", { class: "estimate-table" }, rows.map(([t, v]) => [el("dt", {}, t), el("dd", {}, v)])),
    [...(e.notes || []), ...(e.ignored || []).map((i) => `the engine's estimate ignores ${i}`)].map((n) => el("p", { class: "muted" }, n)));
}
