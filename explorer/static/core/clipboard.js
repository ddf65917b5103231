/* Copying a link or an alignment to the clipboard, with feedback on the
 * button that asked. */
import { el } from "./dom.js";

export function copyText(text, button) {
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

// Without a secure context (plain http on another host) there is no
// clipboard API: copy through a hidden text area.
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
