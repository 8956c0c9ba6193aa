// Search by picture: upload, drag-and-drop, paste, or an indexed image ("more like this");
// results with scores and verdicts, shown a page at a time; k and filters (path prefix, capture
// dates, formats); the state in the URL.
import { api } from "../api.js";
import { h, link, onPaste, pictureInput, resultTile, toast } from "../ui.js";
import { chooseCollection, indexedQuery, keepInUrl } from "./common.js";

export async function searchPage(main, { params, signal }) {
  const { name, select } = await chooseCollection(params, "/search");
  main.append(h("h1", {}, "Search by picture"));
  if (!name) { main.append(h("p", { class: "muted" }, "No collection yet: create one on the Collections page.")); return; }
  const k = h("input", { id: "k", name: "k", type: "number", min: 1, max: 1000, value: params.get("k") || 20 });
  const prefix = h("input", { id: "prefix", name: "path_prefix", value: params.get("prefix") || "", placeholder: "/srv/photos/2024" });
  const after = h("input", { id: "taken-after", name: "taken_after", type: "date", value: params.get("after") || "" });
  const before = h("input", { id: "taken-before", name: "taken_before", type: "date", value: params.get("before") || "" });
  const formats = h("input", { id: "formats", name: "format", value: params.get("formats") || "", placeholder: "JPEG, HEIF" });
  const filters = () => {
    const out = {};
    if (prefix.value) out.path_prefix = prefix.value;
    if (after.value) out.taken_after = `${after.value}T00:00:00Z`;
    if (before.value) out.taken_before = `${before.value}T23:59:59Z`;
    const wanted = formats.value.split(",").map((f) => f.trim().toUpperCase()).filter(Boolean);
    if (wanted.length) out.format = wanted;
    return out;
  };
  const more = h("button", { type: "button", class: "ghost", hidden: true }, "More results");
  let shown = [];
  let shownCount = 0;
  const PAGE = 60; // tiles drawn at a time: a thousand results stay quick to show
  const status = h("p", { class: "muted", "aria-live": "polite" });
  const grid = h("div", { class: "grid", id: "results", "aria-label": "results" });
  let file = null;
  let imageId = params.get("id");
  const run = async () => {
    if (!file && !imageId) return;
    keepInUrl("/search", { c: name, k: k.value, prefix: prefix.value, after: after.value, before: before.value,
      formats: formats.value, id: file ? null : imageId });
    status.textContent = "Searching…";
    grid.replaceChildren();
    const started = performance.now();
    let answer;
    try {
      if (file) {
        const form = new FormData();
        form.append("image", file, file.name || "pasted.png");
        form.append("k", k.value);
        for (const [key, value] of Object.entries(filters())) form.append(key, Array.isArray(value) ? value.join(",") : value);
        answer = await api("POST", `/collections/${encodeURIComponent(name)}/search`, { form });
      } else {
        answer = await api("POST", `/collections/${encodeURIComponent(name)}/search`,
          { json: { image_id: Number(imageId), k: Number(k.value), ...filters() } });
      }
    } catch (err) { status.textContent = ""; toast(err.message, true); return; }
    status.textContent = `${answer.results.length} results in ${Math.round(performance.now() - started)} ms`;
    shown = answer.results;
    shownCount = 0;
    showPage();
  };
  const showPage = () => {
    shown.slice(shownCount, shownCount + PAGE).forEach((r, i) => grid.append(resultTile(r, {
      first: shownCount + i === 0,
      actions: [
        link(`/search?c=${encodeURIComponent(name)}&k=${k.value}&id=${r.image_id}`, "More like this", { class: "button ghost", "data-action": "more" }),
        imageId && !file ? link(`/compare?a=${imageId}&b=${r.image_id}`, "Compare", { class: "button ghost" }) : null,
        link(`/region?c=${encodeURIComponent(name)}&id=${r.image_id}`, "Region", { class: "button ghost" }),
      ],
    })));
    shownCount = Math.min(shown.length, shownCount + PAGE);
    more.hidden = shownCount >= shown.length;
  };
  more.addEventListener("click", showPage);
  const picture = pictureInput({ label: "Query picture: drop, paste (Ctrl+V) or choose a file", onFile: (f) => { file = f; imageId = null; run(); } });
  onPaste((f) => picture.querySelector(".drop").take([f]), signal);
  if (imageId) {
    try {
      const { image, img } = await indexedQuery(imageId);
      picture.querySelector(".preview").replaceChildren(img);
      img.alt = `query: image ${image.id}`;
    } catch (err) { toast(err.message, true); imageId = null; }
  }
  const form = h("form", { class: "row", "aria-label": "Search parameters" }, select,
    h("label", { for: "k" }, "Results (k)", k), h("label", { for: "prefix" }, "Path prefix", prefix),
    h("label", { for: "taken-after" }, "Taken from", after), h("label", { for: "taken-before" }, "Taken until", before),
    h("label", { for: "formats" }, "Formats", formats), h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (e) => { e.preventDefault(); run(); });
  main.append(h("div", { class: "panel" }, picture, form), status, grid, more);
  if (imageId) await run();
}
