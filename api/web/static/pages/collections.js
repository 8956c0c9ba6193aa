// Collections: counts and model; create one; add pictures (upload, drag-and-drop, server paths);
// jobs with live progress, failures and ETA; start a duplicate scan.
import { api } from "../api.js";
import { h, link, pictureInput, toast } from "../ui.js";

function eta(job, startedAt) {
  if (!job.total || !job.done || job.status !== "running") return "";
  const seconds = ((Date.now() - startedAt) / 1000 / job.done) * (job.total - job.done);
  return seconds < 1 ? "" : `about ${seconds < 90 ? Math.round(seconds) + " s" : Math.round(seconds / 60) + " min"} left`;
}

// A job's live view: status, done/total, progress bar, ETA, failed files with their reasons.
function jobView(jobId, { signal, onDone }) {
  const box = h("div", { class: "job", "aria-live": "polite", dataset: { jobId } }, "job ", jobId, "…");
  const startedAt = Date.now();
  const poll = async () => {
    if (signal.aborted) return;
    let job;
    try {
      job = await api("GET", `/jobs/${jobId}`, { query: { errors_limit: 50 } });
    } catch (err) {
      box.replaceChildren(h("span", { class: "error" }, err.message));
      return;
    }
    const percent = job.total ? Math.round((100 * job.done) / job.total) : (job.status === "succeeded" ? 100 : 0);
    const bar = h("span");
    bar.style.width = `${percent}%`;
    box.dataset.status = job.status;
    box.replaceChildren(
      h("div", { class: "row" },
        h("strong", {}, `${job.kind} job ${job.id}`),
        h("span", { class: `status-${job.status}`, "data-job-status": job.status }, job.status),
        h("span", { class: "num", "data-progress": `${job.done}/${job.total}` }, `${job.done} / ${job.total}`),
        job.failed ? h("span", { class: "error" }, `${job.failed} failed`) : null,
        h("span", { class: "muted" }, eta(job, startedAt))),
      h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": percent,
        "aria-label": `job ${job.id} progress` }, bar),
      job.message ? h("p", { class: "muted" }, job.message) : null,
      job.errors.length ? h("ul", { "aria-label": "failed files" }, job.errors.map((e) => h("li", {}, h("code", {}, e.path), ": ", e.error))) : null);
    if (job.status === "queued" || job.status === "running") setTimeout(poll, 400);
    else if (onDone) onDone(job);
  };
  poll();
  return box;
}

function writeControls(collection, { signal, jobs, refresh, models }) {
  const follow = (job) => {
    jobs.replaceChildren(jobView(job.id, { signal, onDone: refresh }));
  };
  const upload = pictureInput({
    label: "Add pictures: drop files here or choose them", multiple: true,
    onFile: async (files) => {
      const form = new FormData();
      files.forEach((f) => form.append("files", f, f.name));
      try {
        follow((await api("POST", `/collections/${encodeURIComponent(collection.name)}/images`, { form })).job);
        toast(`uploading ${files.length} picture${files.length > 1 ? "s" : ""} to ${collection.name}`);
      } catch (err) { toast(err.message, true); }
    },
  });
  upload.querySelector("input").setAttribute("aria-label", `upload pictures to ${collection.name}`);
  const pathInput = h("input", { id: `path-${collection.name}`, name: "path", placeholder: "/srv/photos/2024", size: 24 });
  const indexPath = h("form", { class: "row" },
    h("label", { for: pathInput.id }, "Index a server path", pathInput),
    h("button", { type: "submit", class: "ghost" }, "Index"));
  indexPath.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      follow((await api("POST", `/collections/${encodeURIComponent(collection.name)}/index-jobs`,
        { json: { paths: [pathInput.value.trim()] } })).job);
    } catch (err) { toast(err.message, true); }
  });
  const scan = h("button", { type: "button", class: "ghost", "data-action": "scan" }, "Scan for duplicates");
  scan.addEventListener("click", async () => {
    try {
      follow((await api("POST", `/collections/${encodeURIComponent(collection.name)}/duplicates/scan`, { json: {} })).job);
    } catch (err) { toast(err.message, true); }
  });
  const model = h("select", { id: `model-${collection.name}`, name: "model" }, models.map((m) => h("option", { value: m.name }, m.name)));
  const reindex = h("form", { class: "row", "aria-label": `Re-index ${collection.name} with another model` },
    h("label", { for: model.id }, "Re-index with", model), h("button", { type: "submit", class: "ghost", "data-action": "reindex" }, "Re-index"));
  reindex.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      follow((await api("POST", `/collections/${encodeURIComponent(collection.name)}/reindex-jobs`, { json: { model: model.value } })).job);
      toast(`re-indexing ${collection.name} with ${model.value}: the old index serves until the new one is complete`);
    } catch (err) { toast(err.message, true); }
  });
  return h("div", { class: "write" }, upload, indexPath, h("div", { class: "row" }, scan),
    collection.model && models.length ? reindex : null);
}

function card(collection, context) {
  const jobs = h("div", { class: "jobs" });
  const last = collection.last_job;
  if (last) jobs.append(jobView(last.id, { signal: context.signal, onDone: ["queued", "running"].includes(last.status) ? context.refresh : null }));
  const q = `?c=${encodeURIComponent(collection.name)}`;
  return h("section", { class: "panel card", "aria-labelledby": `c-${collection.name}`, dataset: { collection: collection.name } },
    h("h2", { id: `c-${collection.name}` }, collection.name),
    h("div", { class: "counts" },
      ["images", "indexed", "failed", "vectors"].map((k) => h("span", { dataset: { count: k } }, h("b", {}, collection[k]), k))),
    h("p", { class: "muted" }, "model ", h("code", { title: collection.model || "" }, collection.model ? collection.model.slice(0, 12) : "none yet"),
      collection.missing_vectors ? h("span", { class: "error" }, ` · ${collection.missing_vectors} vectors missing (run dinoseek index)`) : null),
    h("div", { class: "row" }, link(`/search${q}`, "Search", { class: "button" }), link(`/region${q}`, "Region", { class: "button ghost" }),
      link(`/duplicates${q}`, "Duplicates", { class: "button ghost" })),
    context.session.readOnly ? null : writeControls(collection, { ...context, jobs }),
    h("div", {}, h("h3", { class: "muted" }, "Last job"), jobs));
}

export async function collectionsPage(main, context) {
  const { collections } = await api("GET", "/collections", { query: { limit: 500 } });
  const list = h("div", { class: "cards" });
  const refresh = async () => {
    const fresh = await api("GET", "/collections", { query: { limit: 500 } });
    fresh.collections.forEach((c) => {
      const el = list.querySelector(`[data-collection="${CSS.escape(c.name)}"] .counts`);
      if (el) ["images", "indexed", "failed", "vectors"].forEach((k) => { el.querySelector(`[data-count=${k}] b`).textContent = c[k]; });
    });
  };
  const models = context.session.readOnly ? [] : (await api("GET", "/models")).models;
  const ctx = { ...context, refresh, models };
  collections.forEach((c) => list.append(card(c, ctx)));
  main.append(h("h1", {}, "Collections"));
  if (!context.session.readOnly) {
    const name = h("input", { id: "new-collection", name: "name", required: true, pattern: "[A-Za-z0-9_.\\-]{1,128}", placeholder: "photos" });
    const create = h("form", { class: "row panel", "aria-label": "Create a collection" },
      h("label", { for: "new-collection" }, "New collection", name), h("button", { type: "submit" }, "Create"));
    create.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const made = await api("POST", "/collections", { json: { name: name.value } });
        list.prepend(card(made, ctx));
        name.value = "";
        toast(`collection ${made.name} created`);
      } catch (err) { toast(err.message, true); }
    });
    main.append(create);
  }
  if (!collections.length) main.append(h("p", { class: "muted" }, "No collection yet."));
  main.append(list);
}
