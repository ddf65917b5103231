/* Head statistics: one row per head (entropy, diagonality, attention to
 * special tokens, agreement with the alignment, ...); filter by kind, sort
 * by a column, click a row to open the head in the Attention tab. The
 * server's importance answer ("Measure importance") adds the score drop of
 * each head, drawn only for the translation it belongs to. */
import { buttons } from "../core/controls.js";
import { el, empty, fill, showTab } from "../core/dom.js";
import { KINDS } from "../core/matrix.js";
import { drawn, hasTranslation, isCurrent, select, store } from "../core/store.js";

export function headsView(root) {
  let sortKey = null;
  let descending = true;
  let kindFilter = "all";
  let importance = null;
  const columns = [
    ["kind", "attention"], ["layer", "layer"], ["head", "head"], ["entropy", "entropy"],
    ["max_weight", "max weight"], ["diagonality", "diagonality"], ["previous_token", "previous"],
    ["to_special", "to <s>/</s>"], ["to_punctuation", "to punctuation"], ["alignment_agreement", "alignment F1"],
    ["drop", "score drop"],
  ];
  const drops = () => {
    const byHead = new Map();
    if (isCurrent(importance)) {
      for (const h of importance.heads) byHead.set(`${h.kind}:${h.layer}:${h.head}`, h.drop);
    }
    return byHead;
  };
  return {
    setValue(v) {
      importance = v;
      this.draw();
    },
    draw() {
      const p = store.payload;
      if (!hasTranslation(p)) {
        empty(root, "Translate something to compare its heads.");
        drawn(this, p ? p.serial : "");
        return;
      }
      const measured = drops();
      let rows = p.stats
        .filter((r) => kindFilter === "all" || r.kind === kindFilter)
        .map((r) => ({ ...r, drop: measured.has(`${r.kind}:${r.layer}:${r.head}`) ? measured.get(`${r.kind}:${r.layer}:${r.head}`) : null }));
      if (sortKey) {
        const sign = descending ? -1 : 1;
        rows = rows.slice().sort((a, b) => {
          const x = a[sortKey];
          const y = b[sortKey];
          if (x === y) return 0;
          if (x === null) return 1;
          if (y === null) return -1;
          return (x < y ? -1 : 1) * sign;
        });
      }
      const table = el("table", { class: "kmha-stats", id: "head-stats" });
      const head = el("tr");
      for (const [key, label] of columns) {
        head.append(
          el("th", {
            text: `${label}${sortKey === key ? (descending ? " ▼" : " ▲") : ""}`,
            title: "sort",
            onclick: () => {
              descending = sortKey === key ? !descending : true;
              sortKey = key;
              this.draw();
            },
          })
        );
      }
      table.append(el("thead", {}, head));
      const body = el("tbody");
      for (const r of rows) {
        const tr = el("tr", {
          title: "open this head in the Attention tab",
          onclick: () => {
            select({ kind: r.kind, layer: r.layer, head: r.head, mode: "head", highlight: null });
            showTab("Attention");
          },
        });
        for (const [key] of columns) {
          const v = r[key];
          const integer = key === "layer" || key === "head";
          const text = v === null ? "–" : typeof v === "number" && !integer ? v.toFixed(3) : String(v);
          tr.append(el("td", { text }));
        }
        body.append(tr);
      }
      table.append(body);
      const note = isCurrent(importance)
        ? `score drop: log P = ${importance.score.toFixed(3)} with every head; each head switched off alone` +
          (importance.seconds === null ? "" : ` (measured in ${importance.seconds.toFixed(2)} s)`)
        : "score drop: press “Measure importance” above";
      fill(root,
        el("div", { class: "kmha-toolbar" },
          buttons("Attention", [["all", "all"], ...KINDS.map(([k, name]) => [k, name])], kindFilter, (k) => { kindFilter = k; this.draw(); }),
          el("span", { class: "kmha-note", id: "importance-note", text: note })),
        el("div", { class: "kmha-scroll" }, table)
      );
      drawn(this, p.serial);
    },
  };
}
