// Small DOM helpers: elements built from data (never from HTML strings), messages, byte sizes.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

// Show a message in an element with role=alert (empty: hide it).
export function say(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}

export function bytes(count) {
  if (count === null || count === undefined) return "unknown";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

// Xinference writes sizes as 7, 1.5 or "0_135"; show them as numbers.
export const size = (value) => String(value).replace("_", ".");

export function errorText(err) {
  return typeof err?.describe === "function" ? err.describe() : `Error: ${err?.message ?? err}`;
}

// The page-wide notice line under the header (empty: hide it).
export const notify = (message) => say($("#notice"), message);
