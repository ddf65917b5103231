/* The beam search: its tree (kept, dropped and finished hypotheses with
 * their scores, step by step) and its hypotheses; clicking one asks the
 * server to show it in every view ("pick"). */
import { el, empty, fill, fmt, svg } from "../core/dom.js";
import { drawn, hasTranslation } from "../core/store.js";
import { tooltip } from "../core/tooltip.js";

export function beamView(root, emit) {
  return {
    relayout: true,
    draw(p) {
      if (!hasTranslation(p)) {
        empty(root, "Translate something with beam search to see the search.");
        drawn(this, p ? p.serial : "");
        return;
      }
      if (!p.beam) {
        empty(root, "This translation was greedy: choose “beam search” above and translate again to see the search tree.");
        drawn(this, p.serial);
        return;
      }
      const beam = p.beam;
      const steps = beam.steps;
      const K = Math.max(...steps.map((s) => s.length), 1);
      const colW = 92;
      const rowH = 42;
      const width = 96 + steps.length * colW;
      const height = 20 + K * rowH;
      const x = (t) => 84 + t * colW;
      const y = (k) => 18 + k * rowH + rowH / 2;
      const drawing = svg("svg", { class: "kmha-tree", id: "beam-tree", width, height, viewBox: `0 0 ${width} ${height}` });
      const edges = svg("g", {});
      const nodes = svg("g", {});
      nodes.append(svg("text", { x: 8, y: y(0) + 4, class: "kmha-tree-root", text: "<s>" }));
      const status = (owner, finished) => (owner === beam.shown ? "shown" : owner >= 0 ? "kept" : finished ? "finished" : "dropped");
      steps.forEach((step, t) => {
        step.forEach(([parent, piece, score, finished, owner], k) => {
          const x0 = t === 0 ? 36 : x(t - 1) + 36;
          const y0 = t === 0 ? y(0) : y(parent);
          const cls = status(owner, finished);
          edges.append(svg("path", { d: `M${x0},${y0} C${x0 + 20},${y0} ${x(t) - 56},${y(k)} ${x(t) - 36},${y(k)}`, class: `kmha-edge ${cls}` }));
          if (piece === "<pad>") {
            nodes.append(svg("circle", { cx: x(t), cy: y(k), r: 3, class: `kmha-node-dot ${cls}` }));
            edges.append(svg("line", { x1: x(t) - 36, y1: y(k), x2: x(t) + 36, y2: y(k), class: `kmha-edge ${cls}` }));
            return;
          }
          const group = svg("g", {
            class: `kmha-node ${cls}${finished ? " end" : ""}`,
            "data-step": t,
            "data-slot": k,
            onmousemove: (event) =>
              tooltip(event, [
                `step ${t + 1}: “${piece}”`,
                `score ${fmt(score, 3)}${finished ? " (finished)" : ""}`,
                owner >= 0 ? `on the path of hypothesis ${owner + 1}` : finished ? "finished, outranked" : "dropped later",
              ]),
            onmouseleave: () => tooltip(null, null),
          });
          group.append(
            svg("rect", { x: x(t) - 36, y: y(k) - 15, width: 72, height: 30, rx: 6 }),
            svg("text", { x: x(t), y: y(k) - 1, "text-anchor": "middle", class: "kmha-node-piece", text: piece.length > 9 ? `${piece.slice(0, 8)}…` : piece }),
            svg("text", { x: x(t), y: y(k) + 11, "text-anchor": "middle", class: "kmha-node-score", text: fmt(score, 2) })
          );
          nodes.append(group);
        });
      });
      drawing.append(edges, nodes);
      const list = el(
        "ol",
        { class: "kmha-hypotheses", id: "beam-hypotheses" },
        beam.hypotheses.map((h, i) =>
          el(
            "li",
            {},
            el(
              "button",
              {
                type: "button",
                class: i === beam.shown ? "kmha-hypothesis on" : "kmha-hypothesis",
                dataset: { index: String(i) },
                title: "show this hypothesis in every view",
                onclick: () => emit.pick && emit.pick({ index: i }),
              },
              el("span", { text: h.text || "(empty)" }),
              el("span", { class: "kmha-muted", text: ` score ${fmt(h.score, 3)}, ${h.pieces} pieces${i === beam.shown ? " — shown" : ""}` })
            )
          )
        )
      );
      fill(root,
        el("div", { class: "kmha-legend-row" },
          el("span", { class: "kmha-key shown", text: "shown hypothesis" }),
          el("span", { class: "kmha-key kept", text: "other hypotheses" }),
          el("span", { class: "kmha-key finished", text: "finished, outranked" }),
          el("span", { class: "kmha-key dropped", text: "dropped" })),
        el("div", { class: "kmha-scroll" }, drawing),
        el("h4", { text: "Hypotheses (best first): click one to explore it" }),
        list
      );
      drawn(this, `${p.serial}:${beam.shown}`);
    },
  };
}
