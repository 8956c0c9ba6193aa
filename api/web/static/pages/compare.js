// Compare two pictures: side by side with synchronised zoom and pan, an A/B flicker, the metadata
// that differs highlighted, and the match overlay (lines between matched points, a heatmap of the
// matching regions) from GET /compare.
import { ApiError, api, fileUrl, thumbnailUrl } from "../api.js";
import { h, link, toast, verdictBadge } from "../ui.js";

const PREVIEW = 1600;
const FIELDS = ["filename", "format", "width", "height", "size_bytes", "taken_at", "camera", "sha256", "indexed_at"];

function heatmapCanvas(grid) {
  if (!grid || !grid.length) return null;
  const rows = grid.length;
  const cols = grid[0].length;
  const canvas = h("canvas", { width: cols, height: rows, "aria-hidden": "true", class: "heat" });
  const g = canvas.getContext("2d");
  grid.forEach((row, y) => row.forEach((v, x) => {
    g.fillStyle = `rgba(255, ${Math.round(200 * (1 - v))}, 40, ${Math.min(1, Math.max(0, v)) * 0.9})`;
    g.fillRect(x, y, 1, 1);
  }));
  canvas.style.imageRendering = "auto";
  return canvas;
}

function pane(label, image, heat) {
  const img = h("img", { src: thumbnailUrl(image.id, PREVIEW), alt: `${label}: ${image.metadata.filename || image.path}`, draggable: "false" });
  const layer = h("div", { class: "layer" }, img, heat);
  const el = h("div", { class: "pane", tabindex: "0", "aria-label": `picture ${label}; arrows pan, + and - zoom` },
    h("span", { class: "label" }, label), layer);
  return { el, img, layer, image };
}

export async function comparePage(main, { params, signal }) {
  main.append(h("h1", {}, "Compare"));
  const a = params.get("a");
  const b = params.get("b");
  const pick = h("form", { class: "row", "aria-label": "Pictures to compare" },
    h("label", { for: "cmp-a" }, "Image A (id)", h("input", { id: "cmp-a", name: "a", type: "number", min: 1, value: a || "" })),
    h("label", { for: "cmp-b" }, "Image B (id)", h("input", { id: "cmp-b", name: "b", type: "number", min: 1, value: b || "" })),
    h("button", { type: "submit" }, "Compare"));
  pick.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData(pick);
    history.pushState(null, "", `/compare?a=${data.get("a")}&b=${data.get("b")}`);
    window.dispatchEvent(new Event("dinoseek:navigate"));
  });
  main.append(pick);
  if (!a || !b) { main.append(h("p", { class: "muted" }, "Pick two image ids, or open Compare from a search result.")); return; }
  const [imageA, imageB] = await Promise.all([api("GET", `/images/${a}`), api("GET", `/images/${b}`)]);
  let evidence = null;
  try {
    evidence = await api("GET", "/compare", { query: { a, b } });
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) toast(err.message, true);
  }
  const A = pane("A", imageA, heatmapCanvas(evidence?.heatmap?.a?.values));
  const B = pane("B", imageB, heatmapCanvas(evidence?.heatmap?.b?.values));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "lines");
  svg.setAttribute("aria-hidden", "true");
  const stage = h("div", { class: "compare", id: "compare" }, A.el, B.el, svg);
  const view = { scale: 1, x: 0, y: 0, showLines: true, showHeat: true };
  const fit = (p) => {
    const w = p.el.clientWidth;
    const hgt = p.el.clientHeight;
    const iw = p.image.metadata.width || p.img.naturalWidth || 1;
    const ih = p.image.metadata.height || p.img.naturalHeight || 1;
    const s = Math.min(w / iw, hgt / ih);
    p.img.style.width = `${iw * s}px`;
    p.img.style.height = `${ih * s}px`;
  };
  const drawLines = () => {
    svg.replaceChildren();
    if (!evidence || !view.showLines || stage.classList.contains("flicker")) return;
    const box = stage.getBoundingClientRect();
    const ra = A.img.getBoundingClientRect();
    const rb = B.img.getBoundingClientRect();
    const pa = A.el.getBoundingClientRect();
    const pb = B.el.getBoundingClientRect();
    const inside = (r, x, y) => x >= r.left && x <= r.right && y >= r.top && y <= r.bottom;
    for (const [xa, ya, xb, yb] of evidence.matches || []) {
      const x1 = ra.left + (xa / imageA.metadata.width) * ra.width;
      const y1 = ra.top + (ya / imageA.metadata.height) * ra.height;
      const x2 = rb.left + (xb / imageB.metadata.width) * rb.width;
      const y2 = rb.top + (yb / imageB.metadata.height) * rb.height;
      if (!inside(pa, x1, y1) || !inside(pb, x2, y2)) continue;
      const line = document.createElementNS("http://www.w3.org/2000/svg", "line");
      line.setAttribute("x1", x1 - box.left); line.setAttribute("y1", y1 - box.top);
      line.setAttribute("x2", x2 - box.left); line.setAttribute("y2", y2 - box.top);
      svg.append(line);
    }
  };
  const apply = () => {
    for (const p of [A, B]) p.layer.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
    for (const c of stage.querySelectorAll("canvas.heat")) c.hidden = !view.showHeat;
    drawLines();
  };
  const zoom = (factor, cx = 0, cy = 0) => {
    const next = Math.min(16, Math.max(0.5, view.scale * factor));
    view.x = cx - ((cx - view.x) * next) / view.scale;
    view.y = cy - ((cy - view.y) * next) / view.scale;
    view.scale = next;
    apply();
  };
  for (const p of [A, B]) {
    p.el.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = p.el.getBoundingClientRect();
      zoom(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    let drag = null;
    p.el.addEventListener("pointerdown", (e) => { drag = [e.clientX - view.x, e.clientY - view.y]; p.el.setPointerCapture(e.pointerId); p.el.classList.add("dragging"); });
    p.el.addEventListener("pointermove", (e) => { if (drag) { view.x = e.clientX - drag[0]; view.y = e.clientY - drag[1]; apply(); } });
    p.el.addEventListener("pointerup", () => { drag = null; p.el.classList.remove("dragging"); });
    p.img.addEventListener("load", () => { fit(p); apply(); });
  }
  let flickerTimer = null;
  let showingB = false;
  const swap = () => {
    showingB = !showingB;
    A.el.hidden = showingB;
    B.el.hidden = !showingB;
  };
  const flicker = h("button", { type: "button", class: "ghost", "aria-pressed": "false" }, "Flicker A/B");
  flicker.addEventListener("click", () => {
    const on = !stage.classList.contains("flicker");
    stage.classList.toggle("flicker", on);
    flicker.setAttribute("aria-pressed", String(on));
    clearInterval(flickerTimer);
    A.el.hidden = false; B.el.hidden = on; showingB = false;
    if (on) flickerTimer = setInterval(swap, 700);
    [A, B].forEach((p) => fit(p));
    apply();
  });
  signal.addEventListener("abort", () => clearInterval(flickerTimer));
  const toggle = (label, key) => {
    const input = h("input", { type: "checkbox", checked: true, id: `show-${key}` });
    input.addEventListener("change", () => { view[key] = input.checked; apply(); });
    return h("label", { class: "inline", for: input.id }, input, label);
  };
  const controls = h("div", { class: "row" },
    h("button", { type: "button", class: "ghost", onclick: () => zoom(1.25), "aria-label": "zoom in" }, "+"),
    h("button", { type: "button", class: "ghost", onclick: () => zoom(0.8), "aria-label": "zoom out" }, "−"),
    h("button", { type: "button", class: "ghost", onclick: () => { Object.assign(view, { scale: 1, x: 0, y: 0 }); apply(); } }, "Fit"),
    flicker, toggle("match lines", "showLines"), toggle("heatmap", "showHeat"),
    link(`/search?c=${encodeURIComponent(imageA.collection)}&id=${imageA.id}`, "More like A", { class: "button ghost" }),
    h("a", { href: fileUrl(imageA.id), class: "button ghost", target: "_blank", rel: "noopener" }, "Original A"),
    h("a", { href: fileUrl(imageB.id), class: "button ghost", target: "_blank", rel: "noopener" }, "Original B"));
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea")) return;
    const steps = { ArrowLeft: [40, 0], ArrowRight: [-40, 0], ArrowUp: [0, 40], ArrowDown: [0, -40] };
    if (e.key === "+" || e.key === "=") zoom(1.25);
    else if (e.key === "-") zoom(0.8);
    else if (e.key === "f") flicker.click();
    else if (e.key === " " && stage.classList.contains("flicker")) { e.preventDefault(); swap(); }
    else if (steps[e.key] && document.activeElement?.classList.contains("pane")) {
      e.preventDefault(); view.x += steps[e.key][0]; view.y += steps[e.key][1]; apply();
    }
  }, { signal });
  window.addEventListener("resize", () => { [A, B].forEach(fit); apply(); }, { signal });
  const differs = evidence?.differs || Object.fromEntries(FIELDS.filter((f) => imageA.metadata[f] !== imageB.metadata[f])
    .map((f) => [f, [imageA.metadata[f], imageB.metadata[f]]]));
  const table = h("table", { "aria-label": "metadata" },
    h("thead", {}, h("tr", {}, h("th", {}, "field"), h("th", {}, "A"), h("th", {}, "B"))),
    h("tbody", {}, ["path", ...FIELDS].map((f) => {
      const va = f === "path" ? imageA.path : imageA.metadata[f];
      const vb = f === "path" ? imageB.path : imageB.metadata[f];
      return h("tr", { class: f in differs || va !== vb ? "differs" : "" }, h("th", {}, f), h("td", {}, va ?? "—"), h("td", {}, vb ?? "—"));
    })));
  const summary = evidence
    ? h("p", { id: "evidence" }, verdictBadge(evidence.verdict), ` ${evidence.inliers} keypoint matches agree`,
      evidence.box_in_b ? `; A lies in B at ${evidence.box_in_b.join(", ")}` : "")
    : h("p", { class: "muted", id: "evidence" }, "No match evidence from the server for this pair.");
  main.append(summary, controls, stage, h("h2", {}, "Metadata"), h("div", { class: "table-wrap" }, table));
  [A, B].forEach(fit);
  apply();
}
