// Custom model registration: a family in Xinference's registration JSON, and the custom list.

import { api, get } from "./api.js";
import { $, el, errorText, say } from "./dom.js";

const EXAMPLE = {
  model_name: "my-smollm2",
  model_description: "SmolLM2 from local weights",
  model_lang: ["en"],
  model_ability: ["chat"],
  context_length: 2048,
  model_family: "smollm2-instruct",
  model_specs: [
    {
      model_format: "ggufv2",
      model_size_in_billions: "0_135",
      quantization: "Q4_1",
      model_uri: "/path/under/a/model/root/SmolLM2-135M-Instruct.Q4_1.gguf",
    },
  ],
};

export async function show() {
  if (!$("#register-json").value) $("#register-json").value = JSON.stringify(EXAMPLE, null, 2);
  await listCustom();
}

async function listCustom() {
  const list = $("#custom-list");
  try {
    const all = await Promise.all(
      ["LLM", "embedding", "rerank"].map(async (type) =>
        (await get(`/v1/model_registrations/${type}`)).filter((f) => !f.is_builtin).map((f) => ({ ...f, type })),
      ),
    );
    const items = all.flat().map((f) =>
      el("li", {},
        el("span", {}, `${f.model_name} (${f.type})`),
        f.broken ? el("span", { class: "error" }, ` broken: ${f.error}`) : null,
        " ",
        el("button", {
          type: "button",
          class: "secondary",
          "aria-label": `Unregister ${f.model_name}`,
          onclick: async () => {
            try {
              await api("DELETE", `/v1/model_registrations/${f.type}/${encodeURIComponent(f.model_name)}`);
            } catch (err) {
              say($("#register-error"), errorText(err));
            }
            listCustom();
          },
        }, "Unregister")));
    list.replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "None yet.")]));
  } catch (err) {
    list.replaceChildren(el("li", { class: "error" }, errorText(err)));
  }
}

$("#register-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  say($("#register-error"), "");
  say($("#register-status"), "");
  const text = $("#register-json").value;
  try {
    JSON.parse(text);
  } catch (err) {
    say($("#register-error"), `The family is not valid JSON: ${err.message}`);
    return;
  }
  try {
    const type = $("#register-type").value;
    // xinference-client sends the family as a JSON string; the server reads it the same way.
    await api("POST", `/v1/model_registrations/${type}`, { model: text, persist: $("#register-persist").checked });
    say($("#register-status"), `Registered ${JSON.parse(text).model_name}.`);
    listCustom();
  } catch (err) {
    say($("#register-error"), errorText(err));
  }
});
