// The app shell: hash navigation between pages, the API key prompt, and the shared notice line.

import { apiKey, get, onUnauthorized } from "./api.js";
import { $, notify } from "./dom.js";
import * as catalog from "./catalog.js";
import * as launch from "./launch.js";
import * as models from "./models.js";
import * as playground from "./playground.js";
import * as register from "./register.js";

const PAGES = { catalog, launch, models, playground, register };
let current = null;

function route() {
  const name = location.hash.slice(1).split("?")[0] || "catalog";
  const page = PAGES[name] ? name : "catalog";
  if (current && current !== page) PAGES[current].hide?.();
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.dataset.page !== page;
  }
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  current = page;
  document.title = `${$(`#page-${page} h1`).textContent} · modelyard`;
  PAGES[page].show();
}

// The key prompt: opened from the header, and by any 401 with the server's message.
const dialog = $("#key-dialog");
function askForKey(reason) {
  $("#key-reason").textContent =
    reason || "This server asks for an API key. It is kept for this browser session only.";
  $("#key-input").value = apiKey.get();
  if (!dialog.open) dialog.showModal();
}
dialog.addEventListener("close", () => {
  if (dialog.returnValue === "save") apiKey.set($("#key-input").value.trim());
  if (dialog.returnValue === "forget") apiKey.set("");
  if (dialog.returnValue === "save" || dialog.returnValue === "forget") {
    updateKeyButton();
    notify("");
    route(); // reload the page's data with the new key
  }
});
function updateKeyButton() {
  $("#key-button").textContent = apiKey.get() ? "API key ✓" : "API key";
}
$("#key-button").addEventListener("click", () => askForKey());
onUnauthorized((error) => {
  notify(error.describe());
  askForKey(`${error.describe()} Enter a valid key; it is kept for this browser session only.`);
});

window.addEventListener("hashchange", route);
updateKeyButton();
route();
// Whether the server wants a key (open route): ask once, before the first refusal.
get("/v1/cluster/auth")
  .then((answer) => {
    if (answer.auth && !apiKey.get()) askForKey();
  })
  .catch(() => {});
