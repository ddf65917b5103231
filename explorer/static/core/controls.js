/* Small controls: a group of toggle buttons and a labelled checkbox. */
import { el } from "./dom.js";

// items: [[value, text, title?], ...]; the button of `current` is pressed.
export function buttons(label, items, current, onPick, extraClass) {
  return el(
    "div",
    { class: `kmha-group ${extraClass || ""}`, role: "group", "aria-label": label },
    el("span", { class: "kmha-group-label", text: label }),
    items.map(([value, text, title]) =>
      el("button", {
        type: "button",
        class: value === current ? "kmha-btn on" : "kmha-btn",
        "aria-pressed": value === current ? "true" : "false",
        title: title || null,
        dataset: { value: String(value) },
        text,
        onclick: () => onPick(value),
      })
    )
  );
}

export function checkbox(label, checked, onChange, name) {
  const input = el("input", { type: "checkbox", class: name });
  input.checked = checked;
  input.addEventListener("change", () => onChange(input.checked));
  return el("label", { class: "kmha-check" }, input, label);
}
