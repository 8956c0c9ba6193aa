// Region search: draw a box on the query picture (pointer, or type its corners); each result
// shows the box where that region was found in it.
import { api } from "../api.js";
import { h, link, onPaste, pictureInput, resultTile, toast } from "../ui.js";
import { chooseCollection, indexedQuery, keepInUrl } from "./common.js";

// Lets the user draw a box on `img`; reports it in the picture's own pixels (naturalW × naturalH).
function drawable(img, natural, onBox) {
  const stage = h("div", { class: "region-stage", id: "stage", "aria-label": "query picture: drag to draw the region" }, img);
  const drawn = h("div", { class: "drawn", hidden: true });
  stage.append(drawn);
  let start = null;
  const at = (e) => {
    const r = img.getBoundingClientRect();
    return [Math.min(Math.max(e.clientX - r.left, 0), r.width), Math.min(Math.max(e.clientY - r.top, 0), r.height), r];
  };
  const show = (box) => {
    const [w, h2] = natural();
    Object.assign(drawn.style, { left: `${(100 * box[0]) / w}%`, top: `${(100 * box[1]) / h2}%`,
      width: `${(100 * (box[2] - box[0])) / w}%`, height: `${(100 * (box[3] - box[1])) / h2}%` });
    drawn.hidden = false;
  };
  const toBox = (a, b, r) => {
    const [w, h2] = natural();
    const sx = w / r.width;
    const sy = h2 / r.height;
    return [Math.round(Math.min(a[0], b[0]) * sx), Math.round(Math.min(a[1], b[1]) * sy),
      Math.round(Math.max(a[0], b[0]) * sx), Math.round(Math.max(a[1], b[1]) * sy)];
  };
  stage.addEventListener("pointerdown", (e) => { e.preventDefault(); stage.setPointerCapture(e.pointerId); start = at(e); });
  stage.addEventListener("pointermove", (e) => { if (start) show(toBox(start, at(e), start[2])); });
  stage.addEventListener("pointerup", (e) => {
    if (!start) return;
    const box = toBox(start, at(e), start[2]);
    start = null;
    if (box[2] - box[0] >= 4 && box[3] - box[1] >= 4) onBox(box);
  });
  stage.show = show;
  return stage;
}

export async function regionPage(main, { params, signal }) {
  const { name, select } = await chooseCollection(params, "/region");
  main.append(h("h1", {}, "Region search"));
  if (!name) { main.append(h("p", { class: "muted" }, "No collection yet.")); return; }
  const status = h("p", { class: "muted", "aria-live": "polite" });
  const grid = h("div", { class: "grid", id: "results", "aria-label": "results" });
  const corners = ["x0", "y0", "x1", "y1"].map((c) => h("input", { id: `box-${c}`, name: c, type: "number", min: 0, size: 5 }));
  const k = h("input", { id: "k", name: "k", type: "number", min: 1, max: 1000, value: params.get("k") || 12 });
  const holder = h("div", {});
  let file = null;
  let imageId = params.get("id");
  let natural = () => [1, 1];
  let stage = null;
  const box = () => corners.map((c) => Number(c.value));
  const setBox = (b) => { b.forEach((v, i) => { corners[i].value = v; }); if (stage) stage.show(b); };
  const run = async () => {
    const b = box();
    if ((!file && !imageId) || !(b[2] > b[0] && b[3] > b[1])) { status.textContent = "Draw a box on the picture first."; return; }
    keepInUrl("/region", { c: name, id: file ? null : imageId, box: file ? null : b.join(","), k: k.value });
    status.textContent = "Searching…";
    grid.replaceChildren();
    let answer;
    try {
      if (file) {
        const form = new FormData();
        form.append("image", file, file.name || "pasted.png");
        form.append("box", b.join(","));
        form.append("k", k.value);
        answer = await api("POST", `/collections/${encodeURIComponent(name)}/search/region`, { form });
      } else {
        answer = await api("POST", `/collections/${encodeURIComponent(name)}/search/region`,
          { json: { image_id: Number(imageId), box: b, k: Number(k.value) } });
      }
    } catch (err) { status.textContent = ""; toast(err.message, true); return; }
    status.textContent = `${answer.results.length} results for the box ${answer.box.join(", ")}`;
    answer.results.forEach((r, i) => grid.append(resultTile(r, { box: r.box, first: i === 0, actions: [
      link(`/search?c=${encodeURIComponent(name)}&id=${r.image_id}`, "More like this", { class: "button ghost" })] })));
  };
  const showPicture = (img, size) => {
    natural = size;
    stage = drawable(img, natural, (b) => { setBox(b); run(); });
    holder.replaceChildren(stage);
  };
  const picture = pictureInput({ label: "Query picture: drop, paste or choose a file", onFile: (f) => {
    file = f;
    imageId = null;
    const img = h("img", { src: URL.createObjectURL(f), alt: `query picture ${f.name}`, draggable: "false" });
    img.addEventListener("load", () => showPicture(img, () => [img.naturalWidth, img.naturalHeight]), { once: true });
    picture.querySelector(".preview").replaceChildren();
  } });
  onPaste((f) => picture.querySelector(".drop").take([f]), signal);
  const form = h("form", { class: "row", "aria-label": "Region" }, select, corners.map((c) => h("label", { for: c.id }, c.name, c)),
    h("label", { for: "k" }, "Results (k)", k), h("button", { type: "submit" }, "Search region"));
  form.addEventListener("submit", (e) => { e.preventDefault(); run(); });
  main.append(h("div", { class: "panel" }, picture, holder, form), status, grid);
  if (imageId) {
    try {
      const { image, img } = await indexedQuery(imageId);
      img.draggable = false;
      await new Promise((resolve) => { img.onload = resolve; img.onerror = resolve; holder.append(img); });
      showPicture(img, () => [image.metadata.width || img.naturalWidth, image.metadata.height || img.naturalHeight]);
      const given = (params.get("box") || "").split(",").map(Number);
      if (given.length === 4 && given.every(Number.isFinite)) { setBox(given); await run(); }
    } catch (err) { toast(err.message, true); }
  }
}
