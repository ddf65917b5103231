/* Building the page: HTML and SVG elements, and a few measures of it.
 *
 * User text (sentences, pieces, words) only ever reaches the page through
 * textContent or attribute values: `el` and `svg` never parse HTML, and
 * nothing in the explorer writes innerHTML.
 */

// el("div", {class, text, style, dataset, onclick, ...attributes}, ...children)
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

// replaceChildren() would write `null` as text.
export function fill(root, ...children) {
  root.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

export function empty(root, message) {
  root.replaceChildren(el("div", { class: "kmha-empty", text: message }));
}

export function fmt(value, digits = 4) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

export function range(n) {
  return Array.from({ length: n }, (_, i) => i);
}

export function isVisible(node) {
  return node.isConnected && node.offsetParent !== null;
}

// A hidden tab has no width yet: lay out for the width of the tabs.
export function widthOf(node) {
  const own = node.clientWidth;
  if (own > 0) return own;
  const tabs = document.querySelector("#explorer-tabs");
  return (tabs && tabs.clientWidth) || window.innerWidth - 64;
}

export function showTab(label) {
  const tabs = document.querySelectorAll('#explorer-tabs [role="tab"]');
  for (const tab of tabs) if (tab.textContent.trim() === label) tab.click();
}
