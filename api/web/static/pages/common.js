// What the search, region and duplicate pages share: the collection chosen, and the query picture.
import { api, thumbnailUrl } from "../api.js";
import { collectionSelect, go, h } from "../ui.js";

// The collection named by ?c= (else the first one), with a selector that keeps the other parameters.
export async function chooseCollection(params, path) {
  const { collections } = await api("GET", "/collections", { query: { limit: 500 } });
  const names = collections.map((c) => c.name);
  const name = names.includes(params.get("c")) ? params.get("c") : names[0];
  const select = collectionSelect(names, name, (e) => {
    const next = new URLSearchParams(params);
    next.set("c", e.target.value);
    next.delete("id");
    go(`${path}?${next}`);
  });
  return { name, names, select };
}

// The picture of an indexed image as a query preview (the viewer-sized thumbnail) and its metadata.
export async function indexedQuery(imageId) {
  const image = await api("GET", `/images/${imageId}`);
  const img = h("img", { src: thumbnailUrl(imageId, 1024), alt: `query: ${image.metadata.filename || image.path}` });
  return { image, img };
}

// Update the URL's query string without a new history entry (so reload and share show this state).
export function keepInUrl(path, values) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) if (value !== undefined && value !== null && value !== "") params.set(key, value);
  history.replaceState(null, "", `${path}?${params}`);
}
