/* What if: the original translation beside the one forced to start
 * differently (a candidate of the steps view, or a typed start), their
 * differences outlined.
 *
 * The comparison is the server's answer to a click: one that arrives after
 * a newer translation (its serial is not the payload's) is not drawn.
 */
import { probColour } from "../core/colour.js";
import { el, empty, fill, fmt } from "../core/dom.js";
import { drawn, isCurrent } from "../core/store.js";

export function whatifView(root) {
  let value = null;
  const view = {
    setValue(v) {
      value = v;
      render();
    },
    draw() {
      render();
    },
  };
  const render = () => {
    if (!value || !value.original || !isCurrent(value)) {
      empty(root, "Click a candidate in the steps above (or type a start) to see what the model makes of it.");
      drawn(view, "");
      return;
    }
    const [da, db] = differences(value.original.pieces, value.forced.pieces);
    const what = value.step >= 0 ? `“${value.piece}” at step ${value.step + 1}` : `the start “${value.piece}”`;
    const delta = value.forced.log_prob - value.original.log_prob;
    fill(root,
      el("div", { class: "kmha-note" }, `With ${what} forced, the model continues as below. Differences are outlined; forced pieces underlined. `,
        el("b", { text: `Δ log-probability ${delta >= 0 ? "+" : ""}${delta.toFixed(2)}` })),
      el(
        "div",
        { class: "kmha-compare" },
        pieceRow(value.original, da, "Original", "whatif-original"),
        pieceRow(value.forced, db, `With ${what}`, "whatif-forced")
      )
    );
    drawn(view, `${value.serial}:${value.step}:${value.piece}`);
  };
  return view;
}

/* Pieces of `a` and `b` that differ (not in their longest common subsequence). */
function differences(a, b) {
  const L = Array.from({ length: a.length + 1 }, () => new Array(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--)
    for (let j = b.length - 1; j >= 0; j--)
      L[i][j] = a[i] === b[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const inA = new Set();
  const inB = new Set();
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      inA.add(i++);
      inB.add(j++);
    } else if (L[i + 1][j] >= L[i][j + 1]) i++;
    else j++;
  }
  return [a.map((_, k) => !inA.has(k)), b.map((_, k) => !inB.has(k))];
}

// One side of the comparison: its text, log-probability and pieces.
function pieceRow(side, diff, label, id) {
  return el(
    "div",
    { class: "kmha-side", id },
    el("div", { class: "kmha-side-head" }, el("b", { text: label }), el("span", { class: "kmha-muted", text: `log-probability ${fmt(side.log_prob, 2)}` })),
    el("div", { class: "kmha-side-text", text: side.text }),
    el(
      "div",
      { class: "kmha-chips" },
      side.pieces.map((piece, i) =>
        el(
          "span",
          {
            class: `kmha-chip${diff[i] ? " diff" : ""}${i < side.prefix_length ? " forced" : ""}`,
            title: `p = ${fmt(side.probs[i])}${i < side.prefix_length ? " (forced)" : ""}`,
            style: `background:${probColour(side.probs[i])}`,
            dataset: { piece },
          },
          piece,
          el("small", { text: fmt(side.probs[i], 2) })
        )
      )
    )
  );
}
