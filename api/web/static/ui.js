// Small DOM helpers shared by the pages: an element builder, toasts, picture inputs, result tiles.
import { thumbnailUrl } from "./api.js";

// h("div", {class: "x", onclick: f}, child, "text", [more]) → an element.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function toast(message, bad = false) {
  const box = h("div", { class: bad ? "bad" : "" }, message);
  document.getElementById("toast").append(box);
  setTimeout(() => box.remove(), bad ? 8000 : 4000);
}

// Navigate inside the app (the router listens for this).
export function go(href) {
  history.pushState(null, "", href);
  window.dispatchEvent(new Event("dinoseek:navigate"));
}

export function link(href, text, attrs = {}) {
  return h("a", { href, "data-nav": true, ...attrs }, text);
}

// A drop zone that takes a picture by click (file chooser), drag-and-drop or paste; calls onFile(file).
export function pictureInput({ label, onFile, multiple = false, accept = "image/*" }) {
  const input = h("input", { type: "file", accept, class: "file", multiple, tabindex: "-1", "aria-label": label });
  const preview = h("div", { class: "preview" });
  const zone = h("div", { class: "drop", tabindex: "0", role: "button", "aria-label": label },
    preview, h("span", {}, label));
  const take = (files) => {
    const list = [...files].filter((f) => f.type.startsWith("image/") || /\.(jpe?g|png|webp|gif|bmp|tiff?|heic|avif)$/i.test(f.name));
    if (!list.length) return;
    if (!multiple) {
      preview.replaceChildren(h("img", { src: URL.createObjectURL(list[0]), alt: `query picture ${list[0].name}` }));
    }
    onFile(multiple ? list : list[0]);
  };
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  input.addEventListener("change", () => take(input.files));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); take(e.dataTransfer.files); });
  zone.input = input;
  zone.take = take;
  return h("div", {}, zone, input);
}

// Paste from the clipboard anywhere on the page (until the page changes): calls onFile(file).
export function onPaste(onFile, signal) {
  document.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) { e.preventDefault(); onFile(file); }
  }, { signal });
}

const VERDICT_NAMES = { copy: "verified copy", "same scene": "same scene", same_scene: "same scene", similar: "similar",
  exact: "exact", near: "near", different: "different" };

export function verdictBadge(verdict) {
  if (!verdict) return null;
  return h("span", { class: `verdict ${verdict.replace(" ", "-")}`, "data-verdict": verdict }, VERDICT_NAMES[verdict] || verdict);
}

// A box in an image's pixels, drawn over its picture (as percentages of the picture's size).
export function boxOver(box, width, height, attrs = {}) {
  if (!box || !width || !height) return null;
  const [x0, y0, x1, y1] = box;
  const el = h("div", { class: "located", ...attrs });
  Object.assign(el.style, { left: `${(100 * x0) / width}%`, top: `${(100 * y0) / height}%`,
    width: `${(100 * (x1 - x0)) / width}%`, height: `${(100 * (y1 - y0)) / height}%` });
  return el;
}

export function fileName(result) {
  return result.metadata?.filename || (result.path || "").split("/").pop();
}

// A result tile: picture (with an optional box), name, score, verdict, and actions.
export function resultTile(result, { box = null, actions = [], first = false } = {}) {
  const meta = result.metadata || {};
  const frame = h("div", { class: "frame" },
    h("img", { src: thumbnailUrl(result.image_id, 256), alt: fileName(result), loading: "lazy" }),
    boxOver(box, meta.width, meta.height, { "data-located": "true" }));
  return h("article", { class: `tile${first ? " first" : ""}`, dataset: { imageId: result.image_id } },
    h("div", { class: "pic" }, frame),
    h("div", { class: "meta" },
      h("span", { class: "name", title: result.path }, fileName(result)),
      h("span", { class: "score" }, `score ${Number(result.score).toFixed(3)}`),
      verdictBadge(result.verdict)),
    h("div", { class: "actions" }, actions));
}

// Collection names for a <select>; `selected` preselected.
export function collectionSelect(names, selected, onchange) {
  const select = h("select", { id: "collection", name: "collection", onchange },
    names.map((n) => h("option", { value: n, selected: n === selected }, n)));
  return h("label", { for: "collection" }, "Collection", select);
}
