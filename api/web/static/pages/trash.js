// The trash: pictures the review discarded and moved into a trash folder inside their allowed root,
// newest first, each restorable (its file goes back and is indexed again).
import { api } from "../api.js";
import { h, toast } from "../ui.js";
import { chooseCollection } from "./common.js";

export async function trashPage(main, { params, session }) {
  const { name, select } = await chooseCollection(params, "/trash");
  main.append(h("h1", {}, "Trash"));
  if (!name) { main.append(h("p", { class: "muted" }, "No collection yet.")); return; }
  const list = h("table", { id: "trash", class: "trash" });
  const load = async () => {
    const { entries } = await api("GET", `/collections/${encodeURIComponent(name)}/trash`);
    list.replaceChildren(h("thead", {}, h("tr", {}, ["Picture", "Moved to", "When", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, entries.map((e) => h("tr", { dataset: { entryId: e.id } },
        h("td", {}, h("span", { class: "name" }, e.filename || e.original_path.split("/").pop()), h("br"),
          h("span", { class: "muted" }, e.original_path)), h("td", { class: "muted" }, e.trash_path), h("td", {}, new Date(e.trashed_at).toLocaleString()),
        h("td", {}, session.readOnly ? null : h("button", { type: "button", "data-action": "restore", onclick: () => restore(e) }, "Restore"))))));
    if (!entries.length) list.replaceChildren(h("caption", { class: "muted" }, "The trash is empty."));
  };
  const restore = async (entry) => {
    try {
      const { job } = await api("POST", `/trash/${entry.id}/restore`);
      toast(`${entry.original_path.split("/").pop()} restored; job ${job.id} indexes it again`);
      await load();
    } catch (err) {
      toast(err.message, true);
    }
  };
  main.append(h("div", { class: "panel" }, h("div", { class: "row" }, select)), list);
  await load();
}
