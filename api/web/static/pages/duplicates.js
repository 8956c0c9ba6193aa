// Duplicate review: groups by tier with their evidence, a page at a time; thresholds previewed
// before they apply; keep / discard / not-a-duplicate decisions stored by the server (visible,
// undoable, exported); ordered keep rules previewed on the page before they are accepted; reference
// folders; discarded pictures moved to the trash. Keyboard shortcuts: ? shows them.
import { api } from "../api.js";
import { h, link, resultTile, toast, verdictBadge } from "../ui.js";
import { chooseCollection, keepInUrl } from "./common.js";

const PAGE = 24;
const TRASH_BATCH = 1000; // pictures one trash request moves
const RULES = [["largest_resolution", "largest resolution"], ["largest_file", "largest file"],
  ["oldest", "oldest capture date"], ["format_priority", "format priority"], ["prefer_folder", "a folder to prefer"]];
const SHORTCUTS = [["j / k", "next / previous group"], ["1–9", "keep that picture, discard the others of the group"],
  ["n", "not a duplicate: the group's pictures apart from its first"], ["c", "compare the group's first two"],
  ["u", "undo the last decision"], ["?", "this help"], ["Esc", "close"]];

function helpOverlay() {
  const close = () => overlay.remove();
  const overlay = h("div", { class: "overlay", role: "dialog", "aria-modal": "true", "aria-label": "Keyboard shortcuts" },
    h("div", { class: "panel" }, h("h2", {}, "Keyboard shortcuts"),
      h("table", {}, h("tbody", {}, SHORTCUTS.map(([k, what]) => h("tr", {}, h("td", {}, h("kbd", {}, k)), h("td", {}, what))))),
      h("button", { type: "button", onclick: close }, "Close")));
  overlay.addEventListener("keydown", (e) => { if (e.key === "Escape") close(); });
  document.body.append(overlay);
  overlay.querySelector("button").focus();
}

// The decisions as the page shows them: per image its keep or discard, and the whole list.
function decisionIndex(decisions) {
  return { byImage: new Map(decisions.filter((d) => d.kind !== "not_duplicate").map((d) => [d.image_id, d])), list: decisions };
}

// An action of the page: its failure is shown, never left as an unhandled rejection.
function act(fn) {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (err) {
      toast(err.message, true);
    }
  };
}

function ruleRow(onRemove) {
  const select = h("select", { "aria-label": "rule" }, RULES.map(([v, text]) => h("option", { value: v }, text)));
  const detail = h("input", { "aria-label": "rule detail", placeholder: "HEIC, PNG, JPEG", hidden: true });
  const sync = () => {
    detail.hidden = !["format_priority", "prefer_folder"].includes(select.value);
    detail.placeholder = select.value === "prefer_folder" ? "/srv/photos/best" : "HEIC, PNG, JPEG";
  };
  select.addEventListener("change", sync);
  const row = h("li", { class: "row rule" }, select, detail,
    h("button", { type: "button", class: "ghost", "aria-label": "remove this rule", onclick: () => onRemove(row) }, "✕"));
  row.rule = () => {
    const rule = { rule: select.value };
    if (select.value === "format_priority") rule.formats = detail.value.split(",").map((f) => f.trim()).filter(Boolean);
    if (select.value === "prefer_folder") rule.folder = detail.value.trim();
    return rule;
  };
  return row;
}

export async function duplicatesPage(main, { params, signal, session }) {
  const { name, select } = await chooseCollection(params, "/duplicates");
  main.append(h("h1", {}, "Duplicate review"));
  if (!name) { main.append(h("p", { class: "muted" }, "No collection yet.")); return; }
  const collection = `/collections/${encodeURIComponent(name)}`;
  const base = `${collection}/duplicates`;
  const writable = !session.readOnly;
  let decisions = decisionIndex([]);
  let suggestions = new Map(); // group id → {keep, discard} of the keep rules previewed
  let cursor = null;
  const shown = []; // the groups on the page, in order

  const kind = h("select", { id: "kind", name: "kind" }, ["", "exact", "near", "similar"].map((k) =>
    h("option", { value: k, selected: k === (params.get("kind") || "") }, k || "all tiers")));
  const list = h("div", { id: "groups" });
  const more = h("button", { type: "button", class: "ghost", hidden: true }, "More groups");
  const decisionsList = h("ol", { id: "decisions", class: "decisions" });
  const decisionsCount = h("span", { class: "muted" });

  const refreshDecisions = async () => {
    decisions = decisionIndex((await api("GET", `${base}/decisions`)).decisions);
    decisionsCount.textContent = `${decisions.list.length} decisions`;
    decisionsList.replaceChildren(...decisions.list.slice(-50).reverse().map((d) => h("li", { dataset: { decisionId: d.id } },
      h("span", { class: `decision ${d.kind}` }, d.kind.replace("_", " ")), " ",
      d.kind === "not_duplicate" ? `${d.path?.split("/").pop()} ≠ ${d.other_path?.split("/").pop()}` : d.path?.split("/").pop(),
      d.rule ? h("span", { class: "muted" }, ` (${d.rule})`) : null,
      writable ? h("button", { type: "button", class: "ghost", "data-action": "undo", onclick: () => undo(d.id) }, "Undo") : null)));
    shown.forEach((entry) => paint(entry));
  };

  const record = act(async (items, what) => {
    const doc = await api("POST", `${base}/decisions`, { json: { decisions: items } });
    toast(`${what}: ${items.length} decision${items.length > 1 ? "s" : ""} saved`);
    if (doc.groups) await load(true); // a pair kept apart re-made the groups
    else await refreshDecisions();
  });
  const undo = act(async (id) => {
    await api("DELETE", `/duplicates/decisions/${id}`);
    toast("decision undone");
    await load(true);
  });

  // one group's card: its pictures with their decisions, evidence and actions
  const paint = ({ card, group }) => {
    const suggested = suggestions.get(group.id);
    card.querySelectorAll(".member").forEach((tile) => {
      const id = Number(tile.dataset.imageId);
      const d = decisions.byImage.get(id);
      tile.classList.toggle("keep", d?.kind === "keep");
      tile.classList.toggle("discard", d?.kind === "discard");
      tile.classList.toggle("suggest-keep", Boolean(suggested?.keep.includes(id)));
      tile.classList.toggle("suggest-discard", Boolean(suggested?.discard.includes(id)));
      tile.dataset.decision = d?.kind || "";
    });
  };
  const groupCard = (group) => {
    const members = group.image_ids.map((id, i) => ({ image_id: id, path: group.paths[i], score: group.score, metadata: group.metadata[i] }));
    const first = members[0].image_id;
    const card = h("section", { class: "panel group", tabindex: "0", dataset: { groupId: group.id, kind: group.kind },
      "aria-label": `group ${group.id}, ${group.kind}, ${members.length} pictures` });
    const keepOnly = (index) => record(members.map((m, i) => ({ kind: i === index ? "keep" : "discard", image_id: m.image_id })), "kept one");
    const apart = () => record(members.slice(1).map((m) => ({ kind: "not_duplicate", image_id: first, other_image_id: m.image_id })),
      "not duplicates");
    const geometry = group.evidence?.geometry;
    card.keepOnly = keepOnly;
    card.apart = apart;
    card.compare = () => members.length > 1 && link(`/compare?a=${first}&b=${members[1].image_id}`, "").click();
    card.append(
      h("div", { class: "row" }, verdictBadge(group.kind), h("span", { class: "score" }, `score ${group.score.toFixed(3)}`),
        group.evidence?.copy_probability != null ? h("span", { class: "muted" }, `copy probability ${group.evidence.copy_probability.toFixed(2)}`) : null,
        geometry ? h("span", { class: "muted" }, geometry.telling === false ? "too few keypoints to match: judged on resemblance and hash"
          : `${geometry.inliers} agreeing matches`) : null,
        members.length > 1 ? link(`/compare?a=${first}&b=${members[1].image_id}`, "Compare", { class: "button ghost" }) : null,
        writable && members.length > 1 ? h("button", { type: "button", class: "ghost", "data-action": "apart-all", onclick: apart }, "None are duplicates") : null),
      h("div", { class: "members" }, members.map((m, i) => {
        const actions = writable ? [
          h("button", { type: "button", class: "ghost", "data-action": "keep", onclick: () => keepOnly(i) }, `Keep ${i + 1}`),
          h("button", { type: "button", class: "ghost", "data-action": "discard", onclick: () => record([{ kind: "discard", image_id: m.image_id }], "discarded") }, "Discard"),
          i > 0 ? h("button", { type: "button", class: "ghost", "data-action": "apart",
            onclick: () => record([{ kind: "not_duplicate", image_id: first, other_image_id: m.image_id }], "not a duplicate") }, "Not a duplicate of 1") : null,
        ] : [];
        const tile = resultTile(m, { actions });
        tile.classList.add("member");
        if (i > 0) tile.append(link(`/compare?a=${first}&b=${m.image_id}`, "compare with 1", { class: "muted" }));
        return tile;
      })));
    const entry = { card, group };
    paint(entry);
    return entry;
  };

  const load = async (reset) => {
    if (reset) { list.replaceChildren(); shown.length = 0; cursor = null; }
    keepInUrl("/duplicates", { c: name, kind: kind.value });
    const [page] = await Promise.all([api("GET", base, { query: { kind: kind.value, limit: PAGE, cursor } }),
      reset ? refreshDecisions() : null]);
    for (const group of page.groups) {
      const entry = groupCard(group);
      shown.push(entry);
      list.append(entry.card);
    }
    if (!shown.length) list.replaceChildren(h("p", { class: "muted" }, "No groups: scan the collection on the Collections page."));
    cursor = page.next_cursor;
    more.hidden = !cursor;
  };
  kind.addEventListener("change", () => load(true));
  more.addEventListener("click", () => load(false));

  // thresholds: every move previews the counts; Apply re-makes the saved groups at them
  const near = h("input", { id: "min-near", type: "range", min: 0, max: 1, step: 0.01, value: 0 });
  const similar = h("input", { id: "min-similar", type: "range", min: 0, max: 1, step: 0.01, value: 0 });
  const previewOut = h("output", { id: "threshold-preview", for: "min-near min-similar", "aria-live": "polite" });
  const thresholds = () => ({ near: Number(near.value) || null, similar: Number(similar.value) || null });
  const describe = (p) => `${p.groups} groups, ${p.images} pictures (exact ${p.by_kind.exact.groups}, near ${p.by_kind.near.groups}, similar ${p.by_kind.similar.groups})`;
  let previewing = null;
  const preview = () => {
    clearTimeout(previewing);
    previewing = setTimeout(act(async () => {
      const p = await api("POST", `${base}/preview`, { json: { thresholds: thresholds() } });
      previewOut.textContent = `near ≥ ${near.value}, similar ≥ ${similar.value}: keeps ${describe(p)}`;
    }), 120);
  };
  near.addEventListener("input", preview);
  similar.addEventListener("input", preview);
  const applyThresholds = act(async () => {
    const p = await api("POST", `${base}/thresholds`, { json: { thresholds: thresholds() } });
    toast(`applied: ${describe(p)}`);
    await load(true);
  });
  const current = await api("GET", `${base}/thresholds`);
  near.value = current.thresholds.near ?? 0;
  similar.value = current.thresholds.similar ?? 0;
  previewOut.textContent = `saved now: ${describe(current)}`;
  const thresholdPanel = h("div", { class: "row" },
    h("label", { for: "min-near" }, "Near: copy probability from", near),
    h("label", { for: "min-similar" }, "Similar: cosine from", similar), previewOut,
    writable ? h("button", { type: "button", "data-action": "apply-thresholds", onclick: applyThresholds }, "Apply thresholds") : null);

  // keep rules (ordered: the first decides, the next break ties) and reference folders
  const rules = h("ol", { id: "rules", class: "rules" });
  const addRule = () => rules.append(ruleRow((row) => row.remove()));
  addRule();
  const rulesOut = h("p", { id: "rules-preview", class: "muted", "aria-live": "polite" });
  const rulesBody = (scope) => ({ rules: [...rules.children].map((row) => row.rule()),
    group_ids: scope === "page" ? shown.map((e) => e.group.id) : null, kind: kind.value || null });
  const previewRules = act(async () => {
    const out = await api("POST", `${base}/keep-rules/preview`, { json: rulesBody("page") });
    suggestions = new Map(out.groups.map((g) => [g.group_id, g]));
    shown.forEach((entry) => paint(entry));
    const discard = out.groups.reduce((n, g) => n + g.discard.length, 0);
    rulesOut.textContent = `on this page: ${out.groups.length} groups, ${discard} pictures would be discarded (marked)`;
  });
  const acceptRules = act(async (scope) => {
    const out = await api("POST", `${base}/keep-rules/apply`, { json: rulesBody(scope) });
    suggestions = new Map();
    const discard = out.groups.reduce((n, g) => n + g.discard.length, 0);
    rulesOut.textContent = `accepted for ${out.groups.length} groups: ${discard} pictures discarded`;
    await refreshDecisions();
  });
  const references = h("textarea", { id: "reference-folders", rows: 2, placeholder: "/srv/photos/originals (one folder a line)" });
  references.value = (await api("GET", `${collection}/reference-folders`)).folders.join("\n");
  const saveReferences = act(async () => {
    const folders = references.value.split("\n").map((f) => f.trim()).filter(Boolean);
    const saved = await api("PUT", `${collection}/reference-folders`, { json: { folders } });
    toast(`${saved.folders.length} reference folder${saved.folders.length === 1 ? "" : "s"} saved`);
  });
  const discardedIds = async () => {
    const ids = (await api("GET", `${base}/decisions`, { query: { kind: "discard" } })).decisions.map((d) => d.image_id);
    if (!ids.length) toast("nothing discarded yet");
    return ids;
  };
  const unindex = act(async () => {
    const discarded = await discardedIds();
    if (!discarded.length) return;
    for (const id of discarded) await api("DELETE", `/images/${id}`); // the files stay where they are
    toast(`${discarded.length} pictures removed from the index (their files are untouched)`);
    await load(true);
  });
  const toTrash = act(async () => {
    const discarded = await discardedIds();
    if (!discarded.length) return;
    let moved = 0;
    for (let i = 0; i < discarded.length; i += TRASH_BATCH) {
      moved += (await api("POST", `${collection}/trash`, { json: { image_ids: discarded.slice(i, i + TRASH_BATCH) } })).entries.length;
    }
    toast(`${moved} pictures moved to the trash (restore them from the Trash page)`);
    await load(true);
  });
  const rulesPanel = writable ? h("details", { class: "panel", id: "keep-rules" }, h("summary", {}, "Keep rules and reference folders"),
    h("p", { class: "muted" }, "Rules in order: the first decides, the next break its ties. Pictures in a reference folder are always kept."),
    rules, h("div", { class: "row" },
      h("button", { type: "button", class: "ghost", onclick: addRule }, "Add a rule"),
      h("button", { type: "button", class: "ghost", "data-action": "preview-rules", onclick: previewRules }, "Preview on this page"),
      h("button", { type: "button", "data-action": "accept-page", onclick: () => acceptRules("page") }, "Accept for this page"),
      h("button", { type: "button", class: "ghost", "data-action": "accept-all", onclick: () => acceptRules("all") }, "Accept for every group")),
    rulesOut,
    h("label", { for: "reference-folders" }, "Reference folders (never discarded, never moved)", references),
    h("button", { type: "button", class: "ghost", "data-action": "save-references", onclick: saveReferences }, "Save reference folders")) : null;

  const exports = h("span", { class: "row" },
    h("a", { class: "button ghost", href: `/api/v1${base}/decisions?format=csv`, download: `${name}-decisions.csv` }, "Export CSV"),
    h("a", { class: "button ghost", href: `/api/v1${base}/decisions`, download: `${name}-decisions.json` }, "Export JSON"));
  const decisionsPanel = h("details", { class: "panel", id: "decisions-panel" },
    h("summary", {}, "Decisions ", decisionsCount), exports,
    writable ? h("div", { class: "row" },
      h("button", { type: "button", "data-action": "trash-discarded", onclick: toTrash }, "Move discarded pictures to the trash"),
      h("button", { type: "button", class: "ghost", "data-action": "unindex-discarded", onclick: unindex }, "Remove discarded pictures from the index")) : null,
    decisionsList);

  main.append(...[h("div", { class: "panel" }, h("div", { class: "row" }, select, h("label", { for: "kind" }, "Tier", kind),
    h("button", { type: "button", class: "ghost", onclick: helpOverlay, "aria-keyshortcuts": "?" }, "Shortcuts (?)")),
  thresholdPanel), rulesPanel, decisionsPanel, list, more].filter(Boolean));

  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || document.querySelector(".overlay")) return;
    const cards = shown.map((entry) => entry.card);
    const at = cards.indexOf(document.activeElement?.closest(".group"));
    if (e.key === "?") helpOverlay();
    else if (e.key === "j" || e.key === "k") cards[Math.min(cards.length - 1, Math.max(0, at + (e.key === "j" ? 1 : -1)))]?.focus();
    else if (e.key === "c" && at >= 0) cards[at].compare();
    else if (!writable) return;
    else if (/^[1-9]$/.test(e.key) && at >= 0) cards[at].keepOnly(Number(e.key) - 1);
    else if (e.key === "n" && at >= 0) cards[at].apart();
    else if (e.key === "u" && decisions.list.length) undo(decisions.list[decisions.list.length - 1].id);
  }, { signal });
  await load(true);
}
