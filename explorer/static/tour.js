/* The guided first visit: a few short steps through one translation, each
 * outlining the part of the page it speaks of. Shown once (dismissing it is
 * remembered in localStorage); `?tour=1` or the "Take the tour" link starts
 * it again. Text only ever reaches the page through textContent.
 */
import { el, showTab } from "./core/dom.js";

const DONE = "kmha-tour-done";

// Each step: what to outline (a CSS selector), the tab to open first, text.
const STEPS = [
  {
    target: "#source",
    title: "1 · A sentence",
    text: "Type a sentence (or click one of the examples below the button) and press Translate. The model splits it into pieces: subwords from its SentencePiece vocabulary.",
  },
  {
    target: "#translation",
    title: "2 · The translation",
    text: "The output, one piece at a time: each piece coloured by the probability the model gave it when it chose it.",
  },
  {
    target: "#explorer-tabs",
    tab: "How a head works",
    title: "3 · Embeddings + positions",
    text: "Every piece enters as a vector: its embedding plus a position vector. The first stage here, x, is that sum for the query piece; LayerNorm comes next.",
  },
  {
    target: "#explorer-tabs",
    tab: "How a head works",
    title: "4 · One encoder head",
    text: "Pick kind \u201cencoder self-attention\u201d: the query's q meets every key k; q·k ÷ √d_k, then softmax, gives the row of weights. The weighted sum of the values is the head's output.",
  },
  {
    target: "#explorer-tabs",
    tab: "Step by step",
    title: "5 · Cross-attention at one step",
    text: "Each step of the translation: where every cross-attention head of every layer looked in the source while choosing the next piece.",
  },
  {
    target: "#explorer-tabs",
    tab: "Step by step",
    title: "6 · The candidates",
    text: "The pieces the model weighed at this step, with their probabilities, and what each decoder layer alone would have said. Click a candidate: \u201cwhat if\u201d re-translates from it.",
  },
  {
    target: "#explorer-tabs",
    tab: "Attribution",
    title: "7 · Why that piece",
    text: "Attention is where the model looked, not why it chose. Attribution measures how much each source piece and each earlier output piece pushed the chosen piece up.",
  },
];

let box = null;
let outlined = null;

function close(remember) {
  if (box) box.remove();
  if (outlined) outlined.classList.remove("kmha-tour-target");
  box = outlined = null;
  if (remember) {
    try {
      window.localStorage.setItem(DONE, "1");
    } catch (error) {
      /* Private mode: the tour shows again next time. */
    }
  }
}

function show(index) {
  close(false);
  const step = STEPS[index];
  if (step.tab) showTab(step.tab);
  outlined = document.querySelector(step.target);
  if (outlined) {
    outlined.classList.add("kmha-tour-target");
    outlined.scrollIntoView({ block: "center", behavior: "smooth" });
  }
  const last = index === STEPS.length - 1;
  box = el(
    "div",
    { id: "kmha-tour", role: "dialog", "aria-label": "guided tour" },
    el("div", { class: "kmha-tour-title", text: step.title }),
    el("div", { class: "kmha-tour-text", text: step.text }),
    el(
      "div",
      { class: "kmha-tour-buttons" },
      el("button", { type: "button", id: "kmha-tour-skip", text: "Skip the tour", onclick: () => close(true) }),
      index > 0 ? el("button", { type: "button", id: "kmha-tour-back", text: "Back", onclick: () => show(index - 1) }) : null,
      el("button", {
        type: "button",
        id: "kmha-tour-next",
        text: last ? "Done" : `Next (${index + 2}/${STEPS.length})`,
        onclick: () => (last ? close(true) : show(index + 1)),
      })
    )
  );
  document.body.append(box);
}

function seen() {
  try {
    return window.localStorage.getItem(DONE) === "1";
  } catch (error) {
    return false;
  }
}

// Starts the tour once the page's components exist, if it was asked for
// or never dismissed; the intro's link starts it again.
export function installTour() {
  if (window.KMHA_TOUR) return;
  const start = () => show(0);
  window.KMHA_TOUR = { start, steps: STEPS.length };
  const asked = new URLSearchParams(window.location.search).get("tour") === "1";
  const wait = () => {
    if (!document.querySelector("#source")) return setTimeout(wait, 300);
    if (asked || !seen()) start();
  };
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest('a[href="?tour=1"]');
    if (link) {
      event.preventDefault();
      start();
    }
  });
  wait();
}
