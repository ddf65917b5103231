/* The one tooltip of the page, following the pointer. */
import { el } from "./dom.js";

let tip = null;

// tooltip(event, ["line", ...]) shows it; tooltip(null, null) hides it.
export function tooltip(event, lines) {
  if (!tip) {
    tip = el("div", { class: "kmha-tooltip", id: "kmha-tooltip", role: "tooltip" });
    document.body.append(tip);
  }
  if (!lines) {
    tip.style.display = "none";
    return;
  }
  tip.replaceChildren(...lines.map((line) => el("div", { text: line })));
  tip.style.display = "block";
  const x = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  const y = Math.min(event.clientY + 14, window.innerHeight - tip.offsetHeight - 8);
  tip.style.left = `${x}px`;
  tip.style.top = `${y}px`;
}
