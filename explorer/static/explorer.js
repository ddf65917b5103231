/* The explorer's views, drawn in the browser.
 *
 * The server sends one payload per translation (explorer/payload.py) to the
 * "summary" view; every other view draws from that payload and redraws on the
 * client when the visitor switches kind, layer, head or step, hovers or
 * clicks. Only a few actions ask the server: "whatif" (continue from a
 * candidate), "pick" (show another beam hypothesis) and "export" (a download).
 *
 * Each gr.HTML of the page calls KMHA.mount(name, element, props, watch,
 * emitters) once (its js_on_load). User text only ever reaches the page
 * through textContent, never as HTML.
 */
(function () {
  "use strict";
  if (window.KMHA) return;

  const KINDS = [
    ["cross", "cross-attention", "target → source"],
    ["encoder", "encoder self-attention", "source → source"],
    ["decoder", "decoder self-attention", "target → earlier target"],
  ];
  // Query (row) and key (column) token lists of each kind.
  const AXES = {
    encoder: ["source", "source"],
    decoder: ["target", "decoder"],
    cross: ["target", "source"],
  };
  const HEAD_COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
  ];
  const SPECIAL = new Set(["<s>", "</s>", "<pad>", "<unk>"]);

  const store = {
    payload: null,
    views: [],
    sel: {
      kind: "cross",
      layer: 0,
      head: 0,
      mode: "head", // "head" | "layer" | "model"
      merge: false,
      shared: true,
      highlight: null, // {axis: "row" | "col", index}
      method: null, // alignment method
    },
    cache: new Map(),
  };

  // ------------------------------------------------------------ helpers
  function el(tag, attrs, ...children) {
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

  function svg(tag, attrs, ...children) {
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

  function fmt(value, digits = 4) {
    return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
  }

  // Viridis, as a polynomial fit (within 1/255 of matplotlib's table).
  const LUT = (() => {
    const c = [
      [0.2777, 0.0054, 0.3341], [0.105, 1.4046, 1.3846], [-0.3309, 0.2148, 0.0951],
      [-4.6342, -5.7991, -19.3324], [6.2283, 14.1799, 56.6906],
      [4.7764, -13.7451, -65.353], [-5.4355, 4.6459, 26.3124],
    ];
    const table = [];
    for (let i = 0; i < 256; i++) {
      const t = i / 255;
      const rgb = [0, 1, 2].map((k) => {
        let v = c[6][k];
        for (let j = 5; j >= 0; j--) v = v * t + c[j][k];
        return Math.round(255 * Math.min(1, Math.max(0, v)));
      });
      table.push(`rgb(${rgb[0]},${rgb[1]},${rgb[2]})`);
    }
    return table;
  })();

  function colour(value, vmax) {
    const t = vmax > 0 ? Math.min(1, Math.max(0, value / vmax)) : 0;
    return LUT[Math.round(t * 255)];
  }

  function probColour(p) {
    return `hsla(${Math.round(120 * p)},70%,50%,0.35)`;
  }

  let tip = null;
  function tooltip(event, lines) {
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

  function showTab(label) {
    const tabs = document.querySelectorAll('#explorer-tabs [role="tab"]');
    for (const tab of tabs) if (tab.textContent.trim() === label) tab.click();
  }

  function isVisible(node) {
    return node.isConnected && node.offsetParent !== null;
  }

  function widthOf(node) {
    const own = node.clientWidth;
    if (own > 0) return own;
    const summary = document.querySelector("#explorer-tabs");
    return (summary && summary.clientWidth) || window.innerWidth - 64;
  }

  // replaceChildren() would write `null` as text.
  function fill(root, ...children) {
    root.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  }

  function empty(root, message) {
    root.replaceChildren(el("div", { class: "kmha-empty", text: message }));
  }

  function buttons(label, items, current, onPick, extraClass) {
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

  function checkbox(label, checked, onChange, name) {
    const input = el("input", { type: "checkbox", class: name });
    input.checked = checked;
    input.addEventListener("change", () => onChange(input.checked));
    return el("label", { class: "kmha-check" }, input, label);
  }

  // ------------------------------------------------------------ data
  /* One head's weights as a matrix: {data (Float32Array), rows, cols,
   * rowLabels, colLabels}; merged into words when `merge`. */
  function matrix(p, kind, layer, head, merge) {
    const key = `${p.serial}/${kind}/${layer}/${head}/${merge ? 1 : 0}`;
    if (store.cache.has(key)) return store.cache.get(key);
    const [rowAxis, colAxis] = AXES[kind];
    const rowTokens = p.tokens[rowAxis];
    const colTokens = p.tokens[colAxis];
    const flat = p.attention[kind][layer][head];
    const scale = p.scale;
    let m = {
      data: Float32Array.from(flat, (v) => v / scale),
      rows: rowTokens.length,
      cols: colTokens.length,
      rowLabels: rowTokens,
      colLabels: colTokens,
    };
    if (merge) m = mergeWords(m, p.words[rowAxis], p.words[colAxis]);
    store.cache.set(key, m);
    return m;
  }

  // A word's key weight is the sum over its pieces, its query row the mean
  // of its pieces' rows (rows still sum to 1), as keras_mha.plots does.
  function mergeWords(m, rowWords, colWords) {
    const R = rowWords.groups.length;
    const C = colWords.groups.length;
    const data = new Float32Array(R * C);
    rowWords.groups.forEach((rowGroup, r) => {
      colWords.groups.forEach((colGroup, c) => {
        let total = 0;
        for (const i of rowGroup) for (const j of colGroup) total += m.data[i * m.cols + j];
        data[r * C + c] = total / rowGroup.length;
      });
    });
    return { data, rows: R, cols: C, rowLabels: rowWords.labels, colLabels: colWords.labels };
  }

  function maxOf(data) {
    let max = 0;
    for (const v of data) if (v > max) max = v;
    return max;
  }

  function kindMax(p, kind, merge, layer) {
    const key = `${p.serial}/${kind}/max/${merge ? 1 : 0}/${layer}`;
    if (store.cache.has(key)) return store.cache.get(key);
    const [N, H] = p.shape[kind];
    let max = 0;
    for (let n = 0; n < N; n++) {
      if (layer !== undefined && layer !== n) continue;
      for (let h = 0; h < H; h++) max = Math.max(max, maxOf(matrix(p, kind, n, h, merge).data));
    }
    store.cache.set(key, max);
    return max;
  }

  function hasTranslation(p) {
    return p && p.tokens && p.tokens.target.length > 0;
  }

  // ------------------------------------------------------------ heatmap
  /* A heatmap: canvas cells, tokens as HTML labels. Returns the node.
   * opts: cell (px), vmax, labels, values, highlight, title, onLabel(axis, i),
   * onCell(r, c), describe(r, c) -> tooltip lines, className. */
  function heatmap(m, opts) {
    const cell = opts.cell;
    const W = Math.max(1, m.cols * cell);
    const H = Math.max(1, m.rows * cell);
    const ratio = window.devicePixelRatio || 1;
    const canvas = el("canvas", {
      class: "kmha-cells",
      width: Math.round(W * ratio),
      height: Math.round(H * ratio),
      style: `width:${W}px;height:${H}px`,
    });
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    const vmax = opts.vmax > 0 ? opts.vmax : maxOf(m.data) || 1;
    for (let r = 0; r < m.rows; r++) {
      for (let c = 0; c < m.cols; c++) {
        ctx.fillStyle = colour(m.data[r * m.cols + c], vmax);
        ctx.fillRect(c * cell, r * cell, cell + 0.5, cell + 0.5);
      }
    }
    if (opts.values && cell >= 26) {
      ctx.font = `${Math.min(11, cell / 2.6)}px sans-serif`;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      for (let r = 0; r < m.rows; r++) {
        for (let c = 0; c < m.cols; c++) {
          const v = m.data[r * m.cols + c];
          ctx.fillStyle = v / vmax > 0.6 ? "#000" : "#fff";
          ctx.fillText(v.toFixed(2), c * cell + cell / 2, r * cell + cell / 2);
        }
      }
    }
    const hl = opts.highlight;
    if (hl) {
      ctx.strokeStyle = "#ff2d55";
      ctx.lineWidth = 2;
      if (hl.axis === "row" && hl.index < m.rows) ctx.strokeRect(1, hl.index * cell + 1, W - 2, cell - 2);
      if (hl.axis === "col" && hl.index < m.cols) ctx.strokeRect(hl.index * cell + 1, 1, cell - 2, H - 2);
    }
    const node = el("div", { class: `kmha-hm ${opts.className || ""}` });
    if (opts.title) node.append(el("div", { class: "kmha-hm-title", text: opts.title }));
    let rowNodes = [];
    let colNodes = [];
    if (opts.labels) {
      const size = Math.max(9, Math.min(13, cell * 0.62));
      const grid = el("div", {
        class: "kmha-hm-grid",
        style: `grid-template-columns:auto ${W}px;grid-template-rows:auto ${H}px;font-size:${size}px`,
      });
      const label = (axis, i, text) => {
        const isHl = hl && hl.axis === axis && hl.index === i;
        const props = {
          class: `kmha-label ${axis}${isHl ? " hl" : ""}`,
          title: text,
          text,
          dataset: { index: String(i) },
          style: axis === "row" ? `height:${cell}px` : `width:${cell}px`,
        };
        if (opts.onLabel) props.onclick = () => opts.onLabel(axis, i);
        return el("div", props);
      };
      colNodes = m.colLabels.map((t, i) => label("col", i, t));
      rowNodes = m.rowLabels.map((t, i) => label("row", i, t));
      grid.append(
        el("div", { class: "kmha-corner" }),
        el("div", { class: "kmha-cols" }, colNodes),
        el("div", { class: "kmha-rows" }, rowNodes),
        canvas
      );
      node.append(grid);
    } else {
      node.append(canvas);
    }
    let hovered = null;
    const unhover = () => {
      if (!hovered) return;
      rowNodes[hovered[0]] && rowNodes[hovered[0]].classList.remove("hover");
      colNodes[hovered[1]] && colNodes[hovered[1]].classList.remove("hover");
      hovered = null;
    };
    canvas.addEventListener("mousemove", (event) => {
      const box = canvas.getBoundingClientRect();
      const c = Math.floor(((event.clientX - box.left) / box.width) * m.cols);
      const r = Math.floor(((event.clientY - box.top) / box.height) * m.rows);
      if (r < 0 || c < 0 || r >= m.rows || c >= m.cols) return;
      if (!hovered || hovered[0] !== r || hovered[1] !== c) {
        unhover();
        hovered = [r, c];
        rowNodes[r] && rowNodes[r].classList.add("hover");
        colNodes[c] && colNodes[c].classList.add("hover");
      }
      const value = m.data[r * m.cols + c];
      const lines = opts.describe
        ? opts.describe(r, c, value)
        : [`${m.rowLabels[r]} → ${m.colLabels[c]}`, `weight ${value.toFixed(4)}`];
      tooltip(event, lines);
    });
    canvas.addEventListener("mouseleave", () => {
      unhover();
      tooltip(null, null);
    });
    if (opts.onCell) {
      canvas.addEventListener("click", (event) => {
        const box = canvas.getBoundingClientRect();
        const c = Math.floor(((event.clientX - box.left) / box.width) * m.cols);
        const r = Math.floor(((event.clientY - box.top) / box.height) * m.rows);
        opts.onCell(r, c);
      });
    }
    return node;
  }

  function legend(vmax, text) {
    const bar = el("canvas", { class: "kmha-legend-bar", width: 160, height: 10 });
    const ctx = bar.getContext("2d");
    for (let x = 0; x < 160; x++) {
      ctx.fillStyle = LUT[Math.round((x / 159) * 255)];
      ctx.fillRect(x, 0, 1, 10);
    }
    return el(
      "div",
      { class: "kmha-legend" },
      el("span", { text: "0" }),
      bar,
      el("span", { text: vmax.toFixed(2) }),
      el("span", { class: "kmha-muted", text })
    );
  }

  // ------------------------------------------------------------ store
  function publish(p) {
    store.payload = p || null;
    store.cache.clear();
    const sel = store.sel;
    if (hasTranslation(p)) {
      const [N, H] = p.shape[sel.kind] || [1, 1];
      sel.layer = Math.min(sel.layer, N - 1);
      sel.head = Math.min(sel.head, H - 1);
    }
    sel.highlight = null;
    store.views = store.views.filter((v) => v.root.isConnected);
    for (const view of store.views) if (view.draw) safely(view, () => view.draw(store.payload));
  }

  function select(patch) {
    Object.assign(store.sel, patch);
    for (const view of store.views) {
      if (!view.onSelect) continue;
      if (isVisible(view.root)) safely(view, () => view.onSelect());
      else view.dirty = true;
    }
  }

  function safely(view, fn) {
    try {
      fn();
      view.dirty = false;
    } catch (error) {
      console.error(`KMHA ${view.name}:`, error);
      empty(view.root, "This view could not be drawn.");
    }
  }

  function drawn(view, serial) {
    view.root.dataset.drawn = String(serial === undefined ? "" : serial);
  }

  function mount(name, element, props, watch, emitters) {
    const root = element.querySelector(".kmha-root") || element;
    const factory = VIEWS[name];
    if (!factory) {
      console.error(`KMHA: no view ${name}`);
      return;
    }
    const view = Object.assign({ name, root, emit: emitters || {}, dirty: false }, factory(root, emitters || {}));
    view.name = name;
    view.root = root;
    // A component Gradio rendered again replaces its old view.
    store.views = store.views.filter((v) => v.root.isConnected);
    store.views.push(view);
    // Redraw a view that changed while hidden, or whose width changed.
    let lastWidth = 0;
    let hidden = false;
    new ResizeObserver(() => {
      const width = root.clientWidth;
      if (width === 0) {
        hidden = true;
        return;
      }
      const resized = Math.abs(width - lastWidth) > 40;
      // A view that asks the server only when seen redraws when shown.
      const shown = hidden && view.redrawOnShow;
      hidden = false;
      lastWidth = width;
      if ((view.dirty || shown || (resized && view.relayout)) && store.payload) {
        safely(view, () => (view.onSelect ? view.onSelect() : view.draw(store.payload)));
      }
    }).observe(root);
    if (name === "summary") {
      publish(props.value);
      watch("value", () => publish(props.value));
    } else if (view.setValue) {
      safely(view, () => view.setValue(props.value));
      watch("value", () => safely(view, () => view.setValue(props.value)));
    } else if (view.draw) {
      safely(view, () => view.draw(store.payload));
    }
  }

  // ------------------------------------------------------------ views
  const VIEWS = {};

  /* The translation's pieces coloured by probability, and the permalink. */
  VIEWS.summary = (root) => ({
    draw(p) {
      if (!hasTranslation(p)) {
        root.replaceChildren();
        drawn(this, p ? p.serial : "");
        return;
      }
      const chips = p.tokens.target.map((piece, i) =>
        el(
          "span",
          {
            class: i < p.prefix_length ? "kmha-chip forced" : "kmha-chip",
            title: `p = ${fmt(p.probs[i])}${i < p.prefix_length ? " (forced)" : ""}`,
            style: `background:${probColour(p.probs[i])}`,
            dataset: { piece },
          },
          piece,
          el("small", { text: fmt(p.probs[i], 2) })
        )
      );
      const link = permalink(p);
      const copy = el("button", {
        type: "button",
        class: "kmha-btn",
        id: "copy-link",
        text: "Copy link",
        onclick: () => copyText(link, copy),
      });
      fill(root,
        el("div", { class: "kmha-caption", text: "Probability of each output piece (hover for the exact value)" }),
        el("div", { class: "kmha-chips", id: "summary-chips" }, chips),
        el(
          "div",
          { class: "kmha-permalink" },
          copy,
          el("a", { href: link, id: "permalink", text: "link to this translation" })
        )
      );
      drawn(this, p.serial);
    },
  });

  function permalink(p) {
    const params = new URLSearchParams({ model: p.model, text: p.text });
    if (p.decoding === "beam") {
      params.set("decoding", "beam");
      params.set("beam", String(p.beam_size));
    }
    return `${location.origin}${location.pathname}?${params.toString()}`;
  }

  function copyText(text, button) {
    const done = () => {
      const label = button.textContent;
      button.textContent = "Copied ✓";
      setTimeout(() => (button.textContent = label), 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
    } else {
      fallbackCopy(text, done);
    }
  }

  function fallbackCopy(text, done) {
    const area = el("textarea", { style: "position:fixed;left:-9999px" });
    area.value = text;
    document.body.append(area);
    area.select();
    try {
      document.execCommand("copy");
      done();
    } finally {
      area.remove();
    }
  }

  /* Kind / layer / head / mode / scale / merge selectors shared by views. */
  function toolbar(p, options) {
    const sel = store.sel;
    const [N, H] = p.shape[sel.kind];
    const bar = el("div", { class: "kmha-toolbar" });
    bar.append(
      buttons(
        "Attention",
        KINDS.map(([k, name, axes]) => [k, name, axes]),
        sel.kind,
        (kind) => {
          const [n, h] = p.shape[kind];
          select({ kind, layer: Math.min(sel.layer, n - 1), head: Math.min(sel.head, h - 1), highlight: null });
        },
        "kinds"
      ),
      buttons("Layer", range(N).map((n) => [n, `L${n}`]), sel.layer, (layer) => select({ layer }), "layers")
    );
    if (options.heads !== false) {
      bar.append(buttons("Head", range(H).map((h) => [h, `H${h}`]), sel.head, (head) => select({ head }), "heads"));
    }
    if (options.modes) {
      bar.append(
        buttons(
          "Show",
          [
            ["head", "one head"],
            ["layer", "all heads of the layer"],
            ["model", "all layers × heads"],
          ],
          sel.mode,
          (mode) => select({ mode }),
          "modes"
        )
      );
    }
    const checks = el("div", { class: "kmha-group" });
    if (options.scale) {
      checks.append(checkbox("shared colour scale", sel.shared, (shared) => select({ shared }), "kmha-shared"));
    }
    checks.append(checkbox("merge pieces into words", sel.merge, (merge) => select({ merge, highlight: null }), "kmha-merge"));
    bar.append(checks);
    return bar;
  }

  function range(n) {
    return Array.from({ length: n }, (_, i) => i);
  }

  /* Heatmaps: one head, one layer, or the whole model. */
  VIEWS.attention = (root, emit) => ({
    relayout: true,
    draw(p) {
      this.onSelect(p);
    },
    onSelect() {
      const p = store.payload;
      if (!hasTranslation(p)) {
        empty(root, "Translate something to see its attention.");
        drawn(this, p ? p.serial : "");
        return;
      }
      const sel = store.sel;
      const [N, H] = p.shape[sel.kind];
      const width = widthOf(root);
      const body = el("div", { class: "kmha-body" });
      const describe = (m, layer, head) => (r, c, value) => {
        const [rowAxis, colAxis] = AXES[sel.kind];
        return [
          `layer ${layer}, head ${head}`,
          `query ${rowAxis} “${m.rowLabels[r]}” (${r}) → key ${colAxis} “${m.colLabels[c]}” (${c})`,
          `weight ${value.toFixed(4)}`,
        ];
      };
      const onLabel = (axis, index) => {
        const hl = sel.highlight;
        const same = hl && hl.axis === axis && hl.index === index;
        select({ highlight: same ? null : { axis, index } });
      };
      let vmax;
      if (sel.mode === "head") {
        const m = matrix(p, sel.kind, sel.layer, sel.head, sel.merge);
        vmax = sel.shared ? kindMax(p, sel.kind, sel.merge) : maxOf(m.data);
        const labelRoom = 130;
        // Cells as large as fit the width, and a long translation's rows
        // about one screen high.
        const fitWidth = (width - labelRoom - 20) / Math.max(m.cols, 1);
        const fitHeight = 640 / Math.max(m.rows, 1);
        const cell = Math.max(10, Math.min(38, Math.floor(Math.min(fitWidth, fitHeight))));
        body.append(
          heatmap(m, {
            cell,
            vmax,
            labels: true,
            values: m.rows <= 15 && m.cols <= 15,
            highlight: sel.highlight,
            title: `${kindName(sel.kind)}, layer ${sel.layer}, head ${sel.head}`,
            onLabel,
            describe: describe(m, sel.layer, sel.head),
            className: "kmha-big",
          })
        );
        if (sel.highlight) body.append(highlightNote(m, sel.highlight));
        if (sel.highlight && sel.highlight.axis === "row" && !sel.merge) {
          const query = sel.highlight.index;
          body.append(
            el("button", {
              type: "button",
              class: "kmha-link",
              id: "open-head",
              text: "How is this row computed? →",
              onclick: () => openHead({ kind: sel.kind, layer: sel.layer, head: sel.head, query }),
            })
          );
        }
      } else if (sel.mode === "layer") {
        vmax = sel.shared ? kindMax(p, sel.kind, sel.merge, sel.layer) : 0;
        const grid = el("div", { class: "kmha-grid" });
        const perRow = Math.min(H, width > 900 ? 4 : 2);
        for (let h = 0; h < H; h++) {
          const m = matrix(p, sel.kind, sel.layer, h, sel.merge);
          const cols = Math.max(m.cols, 1);
          const cell = Math.max(4, Math.min(22, Math.floor((width / perRow - 110) / cols)));
          grid.append(
            heatmap(m, {
              cell,
              vmax: sel.shared ? vmax : maxOf(m.data),
              labels: m.cols <= 40,
              highlight: sel.highlight,
              title: `head ${h}`,
              onLabel,
              describe: describe(m, sel.layer, h),
              onCell: () => select({ head: h, mode: "head" }),
              className: h === sel.head ? "kmha-picked" : "",
            })
          );
        }
        body.append(grid);
      } else {
        vmax = sel.shared ? kindMax(p, sel.kind, sel.merge) : 0;
        const table = el("div", { class: "kmha-model", style: `grid-template-columns:auto repeat(${H}, auto)` });
        table.append(el("div"));
        for (let h = 0; h < H; h++) table.append(el("div", { class: "kmha-muted", text: `head ${h}` }));
        for (let n = 0; n < N; n++) {
          table.append(el("div", { class: "kmha-muted", text: `layer ${n}` }));
          for (let h = 0; h < H; h++) {
            const m = matrix(p, sel.kind, n, h, sel.merge);
            const cell = Math.max(2, Math.floor(Math.min(120, (width - 80) / H - 12) / Math.max(m.rows, m.cols, 1)));
            table.append(
              heatmap(m, {
                cell,
                vmax: sel.shared ? vmax : maxOf(m.data),
                labels: false,
                describe: describe(m, n, h),
                onCell: () => select({ layer: n, head: h, mode: "head" }),
                className: `kmha-thumb${n === sel.layer && h === sel.head ? " kmha-picked" : ""}`,
              })
            );
          }
        }
        body.append(table);
      }
      const scaleText = sel.shared ? "shared by all heads shown" : "each head scaled to its own maximum";
      fill(root,
        toolbar(p, { modes: true, scale: true }),
        vmax > 0 ? legend(vmax, scaleText) : legend(1, scaleText),
        body,
        downloads(emit)
      );
      drawn(this, p.serial);
    },
  });

  function kindName(kind) {
    return KINDS.find(([k]) => k === kind)[1];
  }

  // Opens "How a head works" on one row (kind, layer, head, query).
  function openHead(pick) {
    store.headPick = { ...pick };
    showTab("How a head works");
    for (const view of store.views) if (view.name === "head" && view.onSelect) safely(view, () => view.onSelect());
  }

  function highlightNote(m, hl) {
    const labels = hl.axis === "row" ? m.colLabels : m.rowLabels;
    const values = [];
    for (let i = 0; i < labels.length; i++) {
      const v = hl.axis === "row" ? m.data[hl.index * m.cols + i] : m.data[i * m.cols + hl.index];
      values.push([labels[i], v]);
    }
    values.sort((a, b) => b[1] - a[1]);
    const token = hl.axis === "row" ? m.rowLabels[hl.index] : m.colLabels[hl.index];
    const lead = hl.axis === "row" ? `“${token}” looks most at` : `Most attention to “${token}” comes from`;
    return el(
      "div",
      { class: "kmha-note", id: "highlight-note" },
      `${lead}: `,
      values.slice(0, 3).map(([t, v], i) => `${i ? ", " : ""}“${t}” ${v.toFixed(3)}`).join("")
    );
  }

  function downloads(emit) {
    const sel = store.sel;
    const ask = (format) =>
      emit.export &&
      emit.export({ format, kind: sel.kind, layer: sel.layer, head: sel.head, merge: sel.merge, shared: sel.shared });
    return el(
      "div",
      { class: "kmha-toolbar kmha-downloads" },
      el("span", { class: "kmha-group-label", text: "Download" }),
      el("button", { type: "button", class: "kmha-btn", text: "this head (.png)", onclick: () => ask("png") }),
      el("button", { type: "button", class: "kmha-btn", text: "this head (.svg)", onclick: () => ask("svg") }),
      el("button", { type: "button", class: "kmha-btn", text: "all heads (.npz)", onclick: () => ask("npz") }),
      el("button", { type: "button", class: "kmha-btn", text: "all heads (.json)", onclick: () => ask("json") })
    );
  }

  /* Token lines (bertviz's head view): queries left, keys right. */
  VIEWS.lines = (root) => {
    const hidden = new Set();
    let focus = null; // {side: "left" | "right", index}
    return {
      relayout: true,
      draw() {
        hidden.clear();
        focus = null;
        this.onSelect();
      },
      onSelect() {
        const p = store.payload;
        if (!hasTranslation(p)) {
          empty(root, "Translate something to see its attention as lines.");
          drawn(this, p ? p.serial : "");
          return;
        }
        const sel = store.sel;
        const [, H] = p.shape[sel.kind];
        const heads = range(H).map((h) => matrix(p, sel.kind, sel.layer, h, sel.merge));
        const m0 = heads[0];
        const rowH = 22;
        const labelW = 150;
        const width = Math.min(760, Math.max(420, widthOf(root) - 20));
        const height = Math.max(m0.rows, m0.cols) * rowH + 30;
        const leftX = labelW;
        const rightX = width - labelW;
        const y = (i) => 24 + i * rowH + rowH / 2;
        const drawing = svg("svg", { class: "kmha-lines", width, height, viewBox: `0 0 ${width} ${height}` });
        const [rowAxis, colAxis] = AXES[sel.kind];
        drawing.append(
          svg("text", { x: leftX - 8, y: 12, "text-anchor": "end", class: "kmha-axis", text: `queries (${rowAxis})` }),
          svg("text", { x: rightX + 8, y: 12, class: "kmha-axis", text: `keys (${colAxis})` })
        );
        const lines = svg("g", {});
        const render = () => {
          lines.replaceChildren();
          heads.forEach((m, h) => {
            if (hidden.has(h)) return;
            for (let r = 0; r < m.rows; r++) {
              if (focus && focus.side === "left" && focus.index !== r) continue;
              for (let c = 0; c < m.cols; c++) {
                if (focus && focus.side === "right" && focus.index !== c) continue;
                const w = m.data[r * m.cols + c];
                if (w < 0.02) continue;
                lines.append(
                  svg("line", {
                    x1: leftX,
                    y1: y(r),
                    x2: rightX,
                    y2: y(c),
                    stroke: HEAD_COLOURS[h % HEAD_COLOURS.length],
                    "stroke-opacity": Math.min(1, w * (focus ? 1.2 : 0.9)).toFixed(3),
                    "stroke-width": (1 + 3 * w).toFixed(2),
                  })
                );
              }
            }
          });
        };
        const token = (side, i, text) =>
          svg("text", {
            x: side === "left" ? leftX - 8 : rightX + 8,
            y: y(i) + 4,
            "text-anchor": side === "left" ? "end" : "start",
            class: `kmha-token${focus && focus.side === side && focus.index === i ? " on" : ""}`,
            "data-side": side,
            "data-index": i,
            text,
            onmouseenter: () => {
              focus = { side, index: i };
              render();
            },
            onmouseleave: () => {
              focus = null;
              render();
            },
          });
        render();
        drawing.append(lines);
        m0.rowLabels.forEach((t, i) => drawing.append(token("left", i, t)));
        m0.colLabels.forEach((t, i) => drawing.append(token("right", i, t)));
        const chips = el(
          "div",
          { class: "kmha-group" },
          el("span", { class: "kmha-group-label", text: "Heads" }),
          range(H).map((h) =>
            el("button", {
              type: "button",
              class: hidden.has(h) ? "kmha-btn kmha-swatch off" : "kmha-btn kmha-swatch",
              style: `--swatch:${HEAD_COLOURS[h % HEAD_COLOURS.length]}`,
              title: "show or hide this head",
              text: `H${h}`,
              onclick: () => {
                if (hidden.has(h)) hidden.delete(h);
                else hidden.add(h);
                this.onSelect();
              },
            })
          )
        );
        const bar = toolbar(p, { heads: false });
        bar.append(chips);
        fill(root, bar, el("div", { class: "kmha-scroll" }, drawing));
        drawn(this, p.serial);
      },
    };
  };

  /* Step-by-step playback with the candidates and every head's row. */
  VIEWS.steps = (root, emit) => {
    let step = 0;
    let timer = null;
    let serial = null;
    const stop = () => {
      if (timer) clearInterval(timer);
      timer = null;
    };
    return {
      relayout: true,
      draw(p) {
        stop();
        if (!p || p.serial !== serial) step = 0;
        serial = p ? p.serial : null;
        this.render();
      },
      go(t) {
        const p = store.payload;
        step = Math.max(0, Math.min(p.tokens.target.length - 1, t));
        this.render();
      },
      render() {
        const p = store.payload;
        if (!hasTranslation(p)) {
          stop();
          empty(root, "Translate something to replay it step by step.");
          drawn(this, p ? p.serial : "");
          return;
        }
        const T = p.tokens.target.length;
        step = Math.min(step, T - 1);
        const slider = el("input", {
          type: "range",
          min: 0,
          max: T - 1,
          value: step,
          id: "step-slider",
          "aria-label": "step",
        });
        slider.addEventListener("input", () => {
          stop();
          this.go(Number(slider.value));
        });
        const play = el("button", {
          type: "button",
          class: "kmha-btn",
          id: "step-play",
          text: timer ? "⏸ pause" : "▶ play",
          onclick: () => {
            if (timer) {
              stop();
              this.render();
              return;
            }
            if (step >= T - 1) step = 0;
            timer = setInterval(() => {
              if (step >= T - 1) {
                stop();
                this.render();
              } else {
                this.go(step + 1);
              }
            }, 900);
            this.render();
          },
        });
        const controls = el(
          "div",
          { class: "kmha-toolbar kmha-steps-bar" },
          el("button", { type: "button", class: "kmha-btn", id: "step-prev", text: "◀", title: "previous step", onclick: () => { stop(); this.go(step - 1); } }),
          play,
          el("button", { type: "button", class: "kmha-btn", id: "step-next", text: "▶|", title: "next step", onclick: () => { stop(); this.go(step + 1); } }),
          slider,
          el("span", { id: "step-label", text: `step ${step + 1} of ${T}` })
        );
        const pieces = p.tokens.target;
        const sofar = el(
          "div",
          { class: "kmha-chips", id: "step-output" },
          pieces.slice(0, step).map((piece, i) =>
            el("span", { class: i < p.prefix_length ? "kmha-chip forced" : "kmha-chip", text: piece, dataset: { piece } })
          ),
          el("span", { class: "kmha-chip now", title: "chosen at this step", text: pieces[step], dataset: { piece: pieces[step] } })
        );
        const alternatives = p.alternatives[step] || [];
        const chosen = pieces[step];
        const rows = alternatives.length ? alternatives : [[chosen, p.probs[step]]];
        const list = el(
          "div",
          { class: "kmha-candidates", id: "step-candidates" },
          rows.map(([piece, prob]) => {
            const isChosen = piece === chosen;
            return el(
              "button",
              {
                type: "button",
                class: isChosen ? "kmha-candidate chosen" : "kmha-candidate",
                title: isChosen ? "the piece the translation took" : "continue the translation from this piece",
                dataset: { piece },
                onclick: () => {
                  if (!isChosen && emit.whatif) {
                    stop();
                    emit.whatif({ step, piece });
                  }
                },
              },
              el("span", { class: "kmha-candidate-piece", text: piece }),
              el("span", { class: "kmha-bar" }, el("span", { style: `width:${(100 * prob).toFixed(1)}%` })),
              el("span", { class: "kmha-candidate-prob", text: `${(100 * prob).toFixed(1)} %` }),
              el("span", { class: "kmha-candidate-mark", text: isChosen ? "✓ chosen" : "what if?" })
            );
          })
        );
        if (!alternatives.length) list.append(el("div", { class: "kmha-muted", text: "No candidates were recorded for this translation." }));
        const forced = step < p.prefix_length ? el("div", { class: "kmha-note", text: "This piece was forced (the prefix); the candidates are what the model would have chosen from." }) : null;
        // Logit lens: each decoder layer's output read through the final
        // normalisation and the output projection.
        const lens = (p.layer_predictions || []).map((steps, layer) => {
          const top = steps[step] || [];
          return el(
            "tr",
            { dataset: { layer: String(layer) } },
            el("th", { text: layer === p.layer_predictions.length - 1 ? `layer ${layer} (the output)` : `layer ${layer}` }),
            ...top.map(([piece, prob]) =>
              el("td", { class: piece === chosen ? "chosen" : "", text: `${piece} ${(100 * prob).toFixed(1)} %` })
            )
          );
        });
        const lensTable = lens.length ? el("table", { class: "kmha-lens", id: "step-layers" }, lens) : null;
        fill(root,
          controls,
          el("h4", { text: "Output so far" }),
          sofar,
          el("h4", { text: `Candidates for piece ${step + 1}` }),
          forced,
          list,
          lensTable ? el("h4", { text: "What each decoder layer would say here (its output through the final norm and output projection)" }) : null,
          lensTable,
          el("h4", { text: "Cross-attention of every head at this step (query: the piece being chosen)" }),
          stepRows(p, "cross", step, p.tokens.source),
          el("h4", { text: "Decoder self-attention at this step (keys: the decoder's inputs so far)" }),
          stepRows(p, "decoder", step, p.tokens.decoder.slice(0, step + 1))
        );
        drawn(this, p.serial);
        root.dataset.step = String(step);
      },
    };
  };

  /* Row `step` of every head of every layer, as a table of coloured cells. */
  function stepRows(p, kind, step, keys) {
    const [N, H] = p.shape[kind];
    const cols = p.tokens[AXES[kind][1]].length;
    const table = el("table", { class: "kmha-steprows", dataset: { kind } });
    const head = el("tr", {}, el("th"));
    keys.forEach((k) => head.append(el("th", { class: "kmha-key" }, el("span", { text: k }))));
    table.append(el("thead", {}, head));
    const body = el("tbody");
    const rows = [];
    let max = 1e-6;
    for (let n = 0; n < N; n++) {
      for (let h = 0; h < H; h++) {
        const flat = p.attention[kind][n][h];
        const values = keys.map((_, c) => flat[step * cols + c] / p.scale);
        max = Math.max(max, ...values);
        rows.push([n, h, values]);
      }
    }
    // One colour scale for the whole table, so that heads compare.
    for (const [n, h, values] of rows) {
      const tr = el("tr", {}, el("th", { text: `L${n} H${h}` }));
      values.forEach((v, c) =>
        tr.append(
          el("td", {
            style: `background:${colour(v, max)}`,
            title: `layer ${n}, head ${h}: “${keys[c]}” ${v.toFixed(4)}`,
          })
        )
      );
      body.append(tr);
    }
    table.append(body);
    return el("div", { class: "kmha-scroll" }, table);
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

  /* The original beside the translation forced to start differently. */
  VIEWS.whatif = (root) => ({
    setValue(value) {
      if (!value || !value.original) {
        empty(root, "Click a candidate in the steps above (or type a start) to see what the model makes of it.");
        drawn(this, "");
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
      drawn(this, `${value.serial}:${value.step}:${value.piece}`);
    },
  });

  /* A visitor's translation, scored piece by piece, with its attention. */
  VIEWS.score = (root) => {
    let value = null;
    const local = { layer: 0, head: 0 };
    return {
      relayout: true,
      setValue(v) {
        value = v;
        local.layer = 0;
        local.head = 0;
        this.render();
      },
      onSelect() {
        this.render();
      },
      render() {
        if (!value || !value.tokens) {
          empty(root, "Type a translation above and score it.");
          drawn(this, "");
          return;
        }
        const v = value;
        const chips = v.tokens.target.map((piece, i) => {
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
        const disagreements = v.preferred.filter(Boolean).length;
        const comparison =
          v.model_log_prob === null || v.model_log_prob === undefined
            ? ""
            : ` The model's own translation (“${v.model_translation}”) has ${fmt(v.model_log_prob, 2)}.`;
        const [N, H] = v.shape.cross;
        local.layer = Math.min(local.layer, N - 1);
        local.head = Math.min(local.head, H - 1);
        const flat = v.attention.cross[local.layer][local.head];
        let m = {
          data: Float32Array.from(flat, (x) => x / v.scale),
          rows: v.tokens.target.length,
          cols: v.tokens.source.length,
          rowLabels: v.tokens.target,
          colLabels: v.tokens.source,
        };
        if (store.sel.merge) m = mergeWords(m, v.words.target, v.words.source);
        const width = widthOf(root);
        const cell = Math.max(10, Math.min(32, Math.floor((width - 150) / Math.max(m.cols, 1))));
        const bar = el(
          "div",
          { class: "kmha-toolbar" },
          buttons("Layer", range(N).map((n) => [n, `L${n}`]), local.layer, (n) => { local.layer = n; this.render(); }),
          buttons("Head", range(H).map((h) => [h, `H${h}`]), local.head, (h) => { local.head = h; this.render(); }),
          checkbox("merge pieces into words", store.sel.merge, (merge) => select({ merge }))
        );
        fill(root,
          el(
            "div",
            { class: "kmha-note", id: "score-summary" },
            el("b", { text: `log-probability ${fmt(v.log_prob, 2)}` }),
            ` over ${v.tokens.target.length} pieces; the model preferred another piece at ${disagreements}.${comparison}`
          ),
          el("div", { class: "kmha-chips", id: "score-chips" }, chips),
          el("h4", { text: "Cross-attention while reading your translation" }),
          bar,
          heatmap(m, {
            cell,
            vmax: maxOf(m.data),
            labels: true,
            values: m.rows <= 15 && m.cols <= 15,
            title: `cross-attention, layer ${local.layer}, head ${local.head}`,
          })
        );
        drawn(this, `${v.serial}:${v.tokens.target.join(" ")}`);
      },
    };
  };

  /* The beam search tree and its hypotheses. */
  VIEWS.beam = (root, emit) => ({
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
  });

  /* How a head works: the stages of one attention row, left to right. The
     controls come from the translation payload; the numbers from the server
     (`trace`), one payload per request. */
  VIEWS.head = (root, emit) => {
    let value = null;
    const pick = { kind: "cross", layer: 0, head: 0, query: 0 };
    const ask = () => emit.trace && emit.trace({ ...pick });
    const takeAsked = () => {
      // A row clicked in another view chooses what this one shows.
      if (store.headPick) {
        Object.assign(pick, store.headPick);
        store.headPick = null;
      }
    };
    const vector = (numbers, label, explain) => {
      const vmax = Math.max(1e-9, ...numbers.map((v) => Math.abs(v)));
      return el(
        "div",
        { class: "kmha-vec" },
        numbers.map((v, i) =>
          el("span", {
            class: "kmha-vec-cell",
            style: `background:${v >= 0 ? "rgba(249,115,22," : "rgba(59,130,246,"}${(Math.abs(v) / vmax).toFixed(3)})`,
            title: explain ? explain(i, v) : `${label}[${i}] = ${v}`,
            dataset: { index: String(i) },
          })
        )
      );
    };
    return {
      relayout: true,
      redrawOnShow: true,
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
      controls(p) {
        const kinds = ["encoder", "decoder", "cross"];
        const [N, H] = p.shape[pick.kind];
        const queries = pick.kind === "encoder" ? p.tokens.source : p.tokens.decoder;
        pick.layer = Math.min(pick.layer, N - 1);
        pick.head = Math.min(pick.head, H - 1);
        pick.query = Math.min(pick.query, queries.length - 1);
        const select = (id, label, options, current, onChange) => {
          const node = el("select", { id, "aria-label": label });
          options.forEach(([val, text]) => node.append(el("option", { value: String(val), text, selected: val === current })));
          node.addEventListener("change", () => onChange(node.value));
          return el("label", { class: "kmha-control" }, `${label} `, node);
        };
        return el(
          "div",
          { class: "kmha-toolbar", id: "head-controls" },
          select("head-kind", "kind", kinds.map((k) => [k, kindName(k)]), pick.kind, (v) => { pick.kind = v; pick.query = 0; ask(); }),
          select("head-layer", "layer", range(N).map((i) => [i, String(i)]), pick.layer, (v) => { pick.layer = Number(v); ask(); }),
          select("head-head", "head", range(H).map((i) => [i, String(i)]), pick.head, (v) => { pick.head = Number(v); ask(); }),
          select("head-query", "query", queries.map((t, i) => [i, `${i}: ${t}`]), pick.query, (v) => { pick.query = Number(v); ask(); })
        );
      },
      render() {
        const p = store.payload;
        takeAsked();
        if (!hasTranslation(p)) {
          empty(root, "Translate something to see how one head computes its weights.");
          drawn(this, p ? p.serial : "");
          return;
        }
        const fresh = value && value.serial === p.serial && value.kind === pick.kind && value.layer === pick.layer && value.head === pick.head && value.query === pick.query;
        if (!fresh) {
          // Ask the server only for a view someone looks at: a hidden tab
          // asks when it is shown (its width changes, `relayout`).
          if (!isVisible(root)) return;
          fill(root, this.controls(p), el("div", { class: "kmha-muted", text: "Computing the stages…" }));
          if (!value || value.serial !== p.serial || !this.asked || this.asked !== `${p.serial}/${pick.kind}/${pick.layer}/${pick.head}/${pick.query}`) {
            this.asked = `${p.serial}/${pick.kind}/${pick.layer}/${pick.head}/${pick.query}`;
            ask();
          }
          return;
        }
        const v = value;
        const labels = Object.fromEntries(v.stages.map((s) => [s.key, s]));
        const card = (key, body) => {
          const s = labels[key];
          return el(
            "div",
            { class: "kmha-stage", dataset: { stage: key } },
            el("div", { class: "kmha-stage-label", text: s.label }),
            el("div", { class: "kmha-formula", text: s.formula }),
            el("div", { class: "kmha-shape", text: s.shape }),
            body
          );
        };
        const keys = v.key_tokens;
        const rows = keys.map((token, j) => {
          const masked = !v.mask[j];
          return el(
            "tr",
            { class: masked ? "masked" : "", dataset: { key: String(j) } },
            el("th", { text: token }),
            el("td", {}, vector(v.products[j], "q·k", (d, x) => `q[${d}] × k_${j}[${d}] = ${v.q[d]} × ${v.keys[j][d]} = ${x}`)),
            el("td", { class: "num", text: v.dots[j].toFixed(3), title: `Σ_d q_d k_${j}d = ${v.dots[j]}` }),
            el("td", { class: "num", text: v.scaled[j].toFixed(3), title: `${v.dots[j]} / √${v.d_k} = ${v.dots[j]} / ${v.sqrt_d_k} = ${v.scaled[j]}` }),
            el("td", { class: "num", text: masked ? "−∞" : "✓", title: masked ? "masked: padding or a later position" : "visible" }),
            el(
              "td",
              { class: "num kmha-weight", dataset: { weight: String(v.weights[j]) }, title: `exp(${v.scaled[j].toFixed(4)}) / Σ exp = ${v.weights[j]}` },
              el("span", { class: "kmha-bar" }, el("span", { style: `width:${(100 * v.weights[j]).toFixed(1)}%` })),
              ` ${v.weights[j].toFixed(3)}`
            )
          );
        });
        const table = el(
          "table",
          { class: "kmha-head-table", id: "head-keys" },
          el(
            "tr",
            {},
            el("th", { text: "key" }),
            el("th", { text: `${labels.products.formula} ${labels.products.shape}` }),
            el("th", { text: labels.dots.formula }),
            el("th", { text: labels.scaled.formula }),
            el("th", { text: labels.mask.formula }),
            el("th", { text: `${labels.weights.formula} (the attention row)` })
          ),
          rows
        );
        const sum = v.weights.reduce((a, b) => a + b, 0);
        const query = v.produces ? `${v.query_token} (the input that produces ${v.produces})` : v.query_token;
        fill(
          root,
          this.controls(p),
          el("div", { class: "kmha-note", text: `${kindName(v.kind)}, layer ${v.layer}, head ${v.head}, query ${query}. d_k = ${v.d_k}, ${v.num_heads} heads. The weights sum to ${sum.toFixed(4)}.` }),
          el("h4", { text: "The model's input: token vector + position vector" }),
          el(
            "div",
            { class: "kmha-stages" },
            el(
              "div",
              { class: "kmha-stage", dataset: { stage: "positions" } },
              el("div", { class: "kmha-stage-label", text: "position vectors" }),
              el("div", { class: "kmha-formula", text: "PE(p, 2i) = sin(p / 10000^(2i/D)), PE(p, 2i+1 in the second half) = cos(…)" }),
              el("div", { class: "kmha-shape", text: `(${v.positions.length}, ${v.x.length}): one row per position` }),
              heatmap(
                {
                  rows: v.positions.length,
                  cols: v.x.length,
                  data: Float32Array.from(v.positions.flat().map((x) => (x + 1) / 2)),
                  rowLabels: v.positions.map((_, i) => String(i)),
                  colLabels: [],
                },
                { cell: Math.max(1, Math.min(4, Math.floor(400 / v.x.length))), vmax: 1, describe: (r, c, x) => [`position ${r}, dimension ${c}`, `value ${(2 * x - 1).toFixed(3)}`] }
              )
            ),
            el(
              "div",
              { class: "kmha-stage", dataset: { stage: "embedding" } },
              el("div", { class: "kmha-stage-label", text: `the query piece “${v.query_token}”` }),
              el("div", { class: "kmha-formula", text: "token vector = E[id] · √D" }),
              vector(v.token_vector, "token"),
              el("div", { class: "kmha-formula", text: `+ position vector PE(${v.query})` }),
              vector(v.position_vector, "position"),
              el("div", { class: "kmha-formula", text: v.layer === 0 && v.kind !== "cross" ? "= x below (layer 0)" : "= the model's input at this position" })
            )
          ),
          el(
            "div",
            { class: "kmha-stages" },
            card("x", vector(v.x, "x")),
            card("normalized", vector(v.normalized, "x̂")),
            card("q", vector(v.q, "q"))
          ),
          el("h4", { text: `Every key (${keys.length}): ${labels.keys.formula}, then the scores` }),
          table,
          el(
            "div",
            { class: "kmha-stages" },
            card("head_output", vector(v.head_output, "head", (d, x) => `Σ_j w_j v_j[${d}] = ${x}`)),
            card("concat", vector(v.concat, "concat", (i, x) => `head ${Math.floor(i / v.head_output.length)}, dimension ${i % v.head_output.length}: ${x}`)),
            card("output", vector(v.output, "output")),
            card("residual", vector(v.residual, "x + output", (d, x) => `${v.x[d]} + ${v.output[d]} = ${x}`)),
            card("block_output", vector(v.block_output, "block output"))
          )
        );
        drawn(this, String(p.serial));
      },
    };
  };

  /* Attribution: per output piece, the contribution of each source piece
     and each earlier output piece (shares of the row), and the source share. */
  VIEWS.attribution = (root) => {
    let value = null;
    return {
      relayout: true,
      setValue(v) {
        value = v;
        this.render();
      },
      onSelect() {
        this.render();
      },
      render() {
        if (!value || !value.tokens) {
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
  };

  /* Word alignment: links between words, a matrix, the Pharaoh text. */
  VIEWS.alignment = (root) => ({
    relayout: true,
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
      const links = current.links ? current.links.split(" ").map((pair) => pair.split("-").map(Number)) : [];
      const picker = el("select", { id: "align-method", "aria-label": "alignment method" });
      for (const m of a.methods) picker.append(el("option", { value: m.id, text: m.label, selected: m.id === method }));
      picker.addEventListener("change", () => select({ method: picker.value }));
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
        el("div", { class: "kmha-toolbar" }, el("label", { class: "kmha-group-label", for: "align-method", text: "Method" }), picker),
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
  });

  /* The head statistics table: filter by kind, sort, open a head. */
  VIEWS.heads = (root) => {
    let sortKey = null;
    let descending = true;
    let kindFilter = "all";
    const columns = [
      ["kind", "attention"], ["layer", "layer"], ["head", "head"], ["entropy", "entropy"],
      ["max_weight", "max weight"], ["diagonality", "diagonality"], ["previous_token", "previous"],
      ["to_special", "to <s>/</s>"], ["to_punctuation", "to punctuation"], ["alignment_agreement", "alignment F1"],
    ];
    return {
      draw() {
        const p = store.payload;
        if (!hasTranslation(p)) {
          empty(root, "Translate something to compare its heads.");
          drawn(this, p ? p.serial : "");
          return;
        }
        let rows = p.stats.filter((r) => kindFilter === "all" || r.kind === kindFilter);
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
        fill(root,
          el("div", { class: "kmha-toolbar" },
            buttons("Attention", [["all", "all"], ...KINDS.map(([k, name]) => [k, name])], kindFilter, (k) => { kindFilter = k; this.draw(); })),
          el("div", { class: "kmha-scroll" }, table)
        );
        drawn(this, p.serial);
      },
    };
  };

  window.KMHA = { mount, publish, select, store };
})();
