/* Word alignment: links between the source and target words (hover a word
 * to follow its links), the alignment matrix and its Pharaoh text, for the
 * method chosen in the menu. The word-deletion methods' links come from the
 * server ("delete": the model scores the source again without each word),
 * asked once per translation and only while the view shows one of them. */
import { copyText } from "../core/clipboard.js";
import { el, empty, fill, isVisible, svg } from "../core/dom.js";
import { drawn, hasTranslation, select, store } from "../core/store.js";

export function alignmentView(root, emit) {
  let asked = null; // The serial whose deletion links were asked.
  return {
    relayout: true,
    redrawOnShow: true,
    setValue(v) {
      // The deletion links of a translation: kept in its payload's methods
      // (so that switching back needs no new request), if it is still shown.
      const p = store.payload;
      if (!v || !hasTranslation(p) || !p.alignment || v.serial !== p.serial) return;
      for (const m of p.alignment.methods) if (m.id in v.methods) m.links = v.methods[m.id];
      this.onSelect();
    },
    draw() {
      this.onSelect();
    },
    onSelect() {
      const p = store.payload;
      if (!hasTranslation(p) || !p.alignment) {
        empty(root, "Translate something to align its words.");
        drawn(this, p ? p.serial : "");
        return;
      }
      const a = p.alignment;
      const methods = a.methods.map((m) => m.id);
      const method = methods.includes(store.sel.method) ? store.sel.method : a.default;
      const current = a.methods.find((m) => m.id === method);
      const picker = el("select", { id: "align-method", "aria-label": "alignment method" });
      for (const m of a.methods) picker.append(el("option", { value: m.id, text: m.label, selected: m.id === method }));
      picker.addEventListener("change", () => select({ method: picker.value }));
      const toolbar = el("div", { class: "kmha-toolbar" }, el("label", { class: "kmha-group-label", for: "align-method", text: "Method" }), picker);
      if (current.links === null) {
        // Not computed yet: asked when the view is seen (a hidden tab asks
        // when it is shown), once per translation.
        fill(root, toolbar, el("div", { class: "kmha-muted", text: "Scoring the translation again without each source word…" }));
        drawn(this, `${p.serial}:pending`);
        if (isVisible(root) && asked !== p.serial && emit.delete) {
          asked = p.serial;
          emit.delete({});
        }
        return;
      }
      const links = current.links ? current.links.split(" ").map((pair) => pair.split("-").map(Number)) : [];
      const src = a.source_words;
      const tgt = a.target_words;
      const measure = document.createElement("canvas").getContext("2d");
      measure.font = "14px sans-serif";
      const place = (words) => {
        let x = 10;
        return words.map((w) => {
          const width = Math.max(24, measure.measureText(w).width + 14);
          const box = { x, width, mid: x + width / 2 };
          x += width + 8;
          return box;
        });
      };
      const top = place(src);
      const bottom = place(tgt);
      const end = (boxes) => (boxes.length ? boxes[boxes.length - 1].x + boxes[boxes.length - 1].width : 0);
      const width = Math.max(end(top), end(bottom)) + 20;
      const drawing = svg("svg", { class: "kmha-align", id: "align-links", width, height: 150, viewBox: `0 0 ${width} 150` });
      const lineNodes = links.map(([i, j]) =>
        svg("line", { x1: top[i] ? top[i].mid : 0, y1: 34, x2: bottom[j] ? bottom[j].mid : 0, y2: 116, class: "kmha-link", "data-source": i, "data-target": j })
      );
      const focus = (attr, index) => {
        for (const line of lineNodes) line.classList.toggle("on", index !== null && line.getAttribute(attr) === String(index));
        drawing.classList.toggle("focus", index !== null);
      };
      drawing.append(...lineNodes);
      const word = (boxes, words, yText, attr, cls) =>
        words.map((w, i) =>
          svg("g", { class: `kmha-word ${cls}`, onmouseenter: () => focus(attr, i), onmouseleave: () => focus(attr, null) },
            svg("rect", { x: boxes[i].x, y: yText - 16, width: boxes[i].width, height: 24, rx: 5 }),
            svg("text", { x: boxes[i].mid, y: yText, "text-anchor": "middle", text: w }))
        );
      drawing.append(...word(top, src, 24, "data-source", "source"), ...word(bottom, tgt, 136, "data-target", "target"));
      const linked = new Set(links.map(([i, j]) => `${i}-${j}`));
      const table = el("table", { class: "kmha-align-matrix" });
      const head = el("tr", {}, el("th"));
      src.forEach((w) => head.append(el("th", { class: "kmha-key" }, el("span", { text: w }))));
      table.append(head);
      tgt.forEach((w, j) => {
        const tr = el("tr", {}, el("th", { text: w }));
        src.forEach((s, i) => tr.append(el("td", { class: linked.has(`${i}-${j}`) ? "on" : "", title: `${s} — ${w}` })));
        table.append(tr);
      });
      const text = el("textarea", { id: "pharaoh", readonly: true, rows: 2, "aria-label": "Pharaoh alignment" });
      text.value = current.links;
      const copy = el("button", { type: "button", class: "kmha-btn", text: "Copy", onclick: () => copyText(current.links, copy) });
      fill(root,
        toolbar,
        el(
          "div",
          { class: "kmha-pharaoh" },
          el("span", { class: "kmha-group-label", text: "Pharaoh (source-target word indices)" }),
          text,
          copy
        ),
        el("div", { class: "kmha-scroll" }, drawing),
        el("div", { class: "kmha-scroll" }, table)
      );
      drawn(this, `${p.serial}:${method}`);
    },
  };
}
