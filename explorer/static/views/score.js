/* A visitor's own translation, scored piece by piece (where the model
 * preferred another piece, that piece), with the cross-attention it paid
 * while reading it.
 *
 * The score is the server's answer to a click: one that arrives after a
 * newer translation (its serial is not the payload's) is not drawn.
 */
import { probColour } from "../core/colour.js";
import { buttons, checkbox } from "../core/controls.js";
import { el, empty, fill, fmt, range, widthOf } from "../core/dom.js";
import { heatmap } from "../core/heatmap.js";
import { fromFlat, headWeights, maxOf, mergeWords } from "../core/matrix.js";
import { drawn, isCurrent, select, store } from "../core/store.js";

export function scoreView(root) {
  let value = null;
  const local = { layer: 0, head: 0 }; // This view's own head, not the shared one.
  const view = {
    relayout: true,
    setValue(v) {
      value = v;
      local.layer = 0;
      local.head = 0;
      render();
    },
    draw() {
      render();
    },
    onSelect() {
      render();
    },
  };
  const render = () => {
    if (!value || !value.tokens || !isCurrent(value)) {
      empty(root, "Type a translation above and score it.");
      drawn(view, "");
      return;
    }
    const v = value;
    const [N, H] = v.shape.cross;
    local.layer = Math.min(local.layer, N - 1);
    local.head = Math.min(local.head, H - 1);
    let m = fromFlat(headWeights(v, "cross", local.layer, local.head), v.scale, v.tokens.target, v.tokens.source);
    if (store.sel.merge) m = mergeWords(m, v.words.target, v.words.source);
    const cell = Math.max(10, Math.min(32, Math.floor((widthOf(root) - 150) / Math.max(m.cols, 1))));
    const pick = (patch) => {
      Object.assign(local, patch);
      render();
    };
    fill(root,
      summary(v),
      el("div", { class: "kmha-chips", id: "score-chips" }, chips(v)),
      el("h4", { text: "Cross-attention while reading your translation" }),
      el(
        "div",
        { class: "kmha-toolbar" },
        buttons("Layer", range(N).map((n) => [n, `L${n}`]), local.layer, (layer) => pick({ layer })),
        buttons("Head", range(H).map((h) => [h, `H${h}`]), local.head, (head) => pick({ head })),
        checkbox("merge pieces into words", store.sel.merge, (merge) => select({ merge }))
      ),
      heatmap(m, {
        cell,
        vmax: maxOf(m.data),
        labels: true,
        values: m.rows <= 15 && m.cols <= 15,
        title: `cross-attention, layer ${local.layer}, head ${local.head}`,
      })
    );
    drawn(view, `${v.serial}:${v.tokens.target.join(" ")}`);
  };
  return view;
}

function summary(v) {
  const disagreements = v.preferred.filter(Boolean).length;
  const comparison =
    v.model_log_prob === null || v.model_log_prob === undefined
      ? ""
      : ` The model's own translation (“${v.model_translation}”) has ${fmt(v.model_log_prob, 2)}.`;
  return el(
    "div",
    { class: "kmha-note", id: "score-summary" },
    el("b", { text: `log-probability ${fmt(v.log_prob, 2)}` }),
    ` over ${v.tokens.target.length} pieces; the model preferred another piece at ${disagreements}.${comparison}`
  );
}

// The visitor's pieces by probability, with the model's preference where
// it differs.
function chips(v) {
  return v.tokens.target.map((piece, i) => {
    const preferred = v.preferred[i];
    return el(
      "span",
      {
        class: preferred ? "kmha-chip disagree" : "kmha-chip",
        title: `p = ${fmt(v.probs[i])}`,
        style: `background:${probColour(v.probs[i])}`,
        dataset: { piece },
      },
      piece,
      el("small", { text: fmt(v.probs[i], 2) }),
      preferred ? el("em", { class: "kmha-preferred", text: `model: ${preferred[0]} ${fmt(preferred[1], 2)}` }) : null
    );
  });
}
