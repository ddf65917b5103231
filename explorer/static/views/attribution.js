/* Attribution: per output piece, the contribution of each source piece and
 * each earlier output piece (shares of the row), and the share that came
 * from the source. The server's answer ("Explain the translation") is
 * drawn only for the translation it belongs to.
 */
import { el, empty, fill, widthOf } from "../core/dom.js";
import { heatmap } from "../core/heatmap.js";
import { maxOf } from "../core/matrix.js";
import { drawn, isCurrent } from "../core/store.js";

export function attributionView(root) {
  let value = null;
  return {
    relayout: true,
    setValue(v) {
      value = v;
      this.render();
    },
    draw() {
      this.render();
    },
    onSelect() {
      this.render();
    },
    render() {
      if (!value || !value.tokens || !isCurrent(value)) {
        empty(root, "Translate something, then explain it.");
        drawn(this, "");
        return;
      }
      const v = value;
      const T = v.tokens.target.length;
      const S = v.tokens.source.length;
      const width = widthOf(root);
      const cell = Math.max(14, Math.min(34, Math.floor((width - 260) / (S + T + 1))));
      const grid = (rows, cols, colLabels, signed, side) => ({
        rows: T,
        cols,
        data: Float32Array.from(rows.flat()),
        rowLabels: v.tokens.target,
        colLabels,
        signed,
        side,
      });
      const source = grid(v.source, S, v.tokens.source, v.signed_source, "source");
      const prefix = grid(v.prefix, T, v.tokens.decoder_input, v.signed_prefix, "prefix");
      const vmax = Math.max(maxOf(source.data), maxOf(prefix.data)) || 1;
      const describe = (m) => (r, c, share) => [
        `${m.rowLabels[r]} ← ${m.side} ${m.colLabels[c]}`,
        `share of the row ${(100 * share).toFixed(1)} %`,
        `contribution ${m.signed[r][c].toFixed(4)} (to log p = ${v.log_probs[r].toFixed(3)})`,
      ];
      const maps = el(
        "div",
        { class: "kmha-row" },
        heatmap(source, { cell, vmax, labels: true, title: "from the source", describe: describe(source) }),
        heatmap(prefix, { cell, vmax, labels: true, title: "from the translation so far", describe: describe(prefix) })
      );
      const bars = el("div", { class: "kmha-share", id: "attribution-share" });
      v.tokens.target.forEach((piece, t) => {
        const share = v.source_share[t];
        bars.append(
          el(
            "div",
            { class: "kmha-share-row", title: `${piece}: ${(100 * share).toFixed(1)} % from the source` },
            el("span", { class: "kmha-share-label", text: piece }),
            el(
              "span",
              { class: "kmha-share-bar" },
              el("span", { class: "kmha-share-fill", style: `width:${(100 * share).toFixed(1)}%` })
            ),
            el("span", { class: "kmha-share-value", text: `${Math.round(100 * share)} %` })
          )
        );
      });
      const note = [`${v.method === "grad_x_input" ? "gradient × input" : `integrated gradients, ${v.steps} steps`}`];
      if (v.completeness_error) {
        const worst = Math.max(...v.completeness_error);
        note.push(`completeness: contributions sum to log p − log p(baseline) within ${worst.toFixed(3)}`);
      }
      if (v.seconds !== null && v.seconds !== undefined) note.push(`${v.seconds.toFixed(2)} s`);
      fill(
        root,
        el("div", { class: "kmha-note", text: note.join(" · ") }),
        maps,
        el("div", { class: "kmha-hm-title", text: "share of each piece that came from the source" }),
        bars
      );
      drawn(this, String(v.serial));
    },
  };
}
