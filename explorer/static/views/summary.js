/* The translation's pieces coloured by their probability, and a permalink
 * that opens the page on this translation. This view's value is the payload
 * every other view draws from (mount.js publishes it). */
import { copyText } from "../core/clipboard.js";
import { probColour } from "../core/colour.js";
import { el, fill, fmt } from "../core/dom.js";
import { drawn, hasTranslation } from "../core/store.js";

export function summaryView(root) {
  return {
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
  };
}

// The page's address with the request in its query (the Translate view
// reads it back when the page opens).
function permalink(p) {
  const params = new URLSearchParams({ model: p.model, text: p.text });
  if (p.decoding === "beam") {
    params.set("decoding", "beam");
    params.set("beam", String(p.beam_size));
  }
  return `${location.origin}${location.pathname}?${params.toString()}`;
}
