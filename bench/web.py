"""The web app in real headless Chromium: duplicate review at 10,000 groups, search by upload at 100k images.

Builds one library in a temporary folder (SQLite catalog, embedded FAISS stores, a tiny random
ViT-Ti/14 unless ``--model``) with two collections, each indexing the same few real photos
(scikit-image's):

- ``review``: the photos, plus catalog rows for the members of ``--groups`` saved duplicate groups
  of 2-3 pictures (rows copied from the photos' own, each with a path of its own: a hard link to
  the photo's file, so thumbnails are served), saved with ``save_groups`` with a judged pair per
  neighbouring members of the near and similar groups;
- ``search``: the photos, plus rows up to ``--images`` in all, each an indexed row (hard link to a
  photo's file, no pHash, no stored keypoints) with a random unit vector in the global store.

Then serves the real ``create_app`` in a werkzeug thread, signs in through the page, and measures
with ``performance.now()`` in the page (and wall time around ``driver.get``/``send_keys`` plus
WebDriverWait polling at 10 ms, for comparison):

- opening ``/duplicates?c=review``: navigation start to the page marked ready with its first
  groups in the DOM (``--repeat`` opens);
- "More groups": the click to the next page's cards in the DOM (``--repeat`` clicks);
- a search by upload of an edited copy of a photo: the file input's change event to the first
  ``#results .tile`` in the DOM (one warm-up, then ``--searches``), and whether the first result
  is the copy's source photo.

    .venv/bin/python bench/web.py [--groups 10000] [--images 100000] [--model PATH] [--repeat 10] [--keep DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo before bench/: bench/api.py is not the api package

from dinoseek.settings import Settings, load_settings  # noqa: E402
from indexer.catalog.models import Image  # noqa: E402
from indexer.duplicates.groups import Group, JudgedEdge, save_groups  # noqa: E402
from indexer.jobs import index_paths  # noqa: E402
from indexer.library import Library  # noqa: E402
from tests.support.photos import skimage_photo  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
KEY = "bench-web-key-0123456789"
PHOTOS = ("coffee", "rocket", "astronaut", "chelsea", "camera")
QUERY_SOURCE = "chelsea"
ROW_BATCH = 20_000  # catalog rows per insert statement, vectors per store upsert
COPIED = ("sha256", "phash", "size_bytes", "mtime_ns", "format", "width", "height", "orientation", "taken_at", "camera",
          "status", "model_id", "indexed_at", "patch_rows", "patch_cols")
POLL = 0.01

# Installed before each document's scripts: the page's own clock when the duplicates page is
# ready with its groups, and when the first search result tile appears after a file is chosen.
PAGE_PROBE = """
window.__bench = {};
new MutationObserver(() => {
  const b = window.__bench;
  if (b.groups == null && document.body && document.body.dataset.ready === 'duplicates'
      && document.querySelector('#groups .group')) b.groups = performance.now();
  if (b.chosen != null && b.tile == null && document.querySelector('#results .tile')) b.tile = performance.now();
}).observe(document, {childList: true, subtree: true, attributes: true, attributeFilter: ['data-ready']});
document.addEventListener('change', (e) => {
  if (e.target.matches && e.target.matches('input[type=file]')) window.__bench.chosen = performance.now();
}, true);
"""

# One "More groups" click: milliseconds to the next page's cards in the DOM, and to the frame after.
MORE_GROUPS = """
const done = arguments[arguments.length - 1];
const list = document.querySelector('#groups');
const more = document.querySelector('#groups + button');
const before = list.querySelectorAll('.group').length;
const t0 = performance.now();
const seen = new MutationObserver(() => {
  const now = list.querySelectorAll('.group').length;
  if (now <= before) return;
  seen.disconnect();
  const t1 = performance.now();
  requestAnimationFrame(() => setTimeout(() => done([t1 - t0, performance.now() - t0, now - before]), 0));
});
seen.observe(list, {childList: true});
more.click();
"""


def tiny_model(path: Path) -> Path:
    """A seeded random ViT-Ti/14 at 112 px, saved as a checkpoint (what the browser tests use)."""
    import torch

    from model import arch_by_name, build_vit, save_checkpoint

    torch.manual_seed(0)
    vit = build_vit(arch_by_name("vitt14"))
    vit.embed_defaults = {"image_size": 112, "pooling": "cls+gem"}
    save_checkpoint(vit, path)
    return path


def write_photos(folder: Path) -> Path:
    """The real photos as JPEGs in ``folder``."""
    folder.mkdir(parents=True)
    for name in PHOTOS:
        skimage_photo(name).save(folder / f"{name}.jpg", quality=90)
    return folder


def edited_copy(path: Path) -> Path:
    """A cropped, shrunk, hard re-encoded copy of the query's source photo."""
    photo = skimage_photo(QUERY_SOURCE)
    photo.crop((20, 15, photo.width - 25, photo.height - 10)).resize((300, 200)).save(path, quality=50)
    return path


def photo_rows(library: Library, collection: str) -> tuple[int, list[dict]]:
    """The collection's id and its indexed photos' rows (path and the columns a copy keeps)."""
    from sqlalchemy import select

    with library.catalog.session() as s:
        collection_id = library.get_collection(s, collection).id
        rows = s.scalars(select(Image).where(Image.collection_id == collection_id, Image.status == "indexed")
                         .order_by(Image.id)).all()
        return collection_id, [{"path": r.path, **{c: getattr(r, c) for c in COPIED}} for r in rows]


def add_rows(library: Library, collection_id: int, rows: list[dict]) -> list[int]:
    """Insert catalog rows in batches (executemany); their ids in order."""
    from sqlalchemy import insert

    ids: list[int] = []
    for start in range(0, len(rows), ROW_BATCH):
        batch = [{"collection_id": collection_id, **r} for r in rows[start:start + ROW_BATCH]]
        with library.catalog.session() as s:
            ids += s.scalars(insert(Image).returning(Image.id, sort_by_parameter_order=True), batch).all()
    return ids


def linked_rows(sources: list[dict], folder: Path, keep: tuple[str, ...] = COPIED) -> list[dict]:
    """A row per entry of ``sources``: a copy of that source row (the columns in ``keep``) whose
    path is a new hard link to the source's file in ``folder``."""
    folder.mkdir(parents=True)
    out = []
    for i, source in enumerate(sources):
        path = folder / f"{i:07d}-{Path(source['path']).name}"
        os.link(source["path"], path)
        out.append({**{c: source[c] for c in keep}, "path": str(path)})
    return out


def build_review(library: Library, root: Path, groups: int, rng: random.Random) -> int:
    """``groups`` saved duplicate groups of 2-3 pictures in collection ``review``; the rows added."""
    collection_id, photos = photo_rows(library, "review")
    sizes = [rng.choice((2, 2, 3)) for _ in range(groups)]
    # a group's members are links to one photo, as copies of one picture would be
    rows = linked_rows([source for n in sizes for source in [rng.choice(photos)] * n], root / "links" / "review")
    ids = add_rows(library, collection_id, rows)
    saved, edges, at = [], [], 0
    for n in sizes:
        members, paths = ids[at:at + n], [r["path"] for r in rows[at:at + n]]
        at += n
        kind = rng.choices(("exact", "near", "similar"), (2, 5, 3))[0]
        if kind == "exact":
            saved.append(Group(kind, members, paths, 1.0))
            continue
        pairs = []
        for a, b in zip(members, members[1:]):
            descriptor = rng.uniform(0.9, 0.99) if kind == "near" else rng.uniform(0.7, 0.9)
            probability = rng.uniform(0.6, 0.99) if kind == "near" else rng.uniform(0.05, 0.4)
            evidence = {"descriptor": round(descriptor, 6), "normalised": round(descriptor - 0.3, 6),
                        "hash": round(rng.uniform(0.6, 1.0), 6), "geometry": None,
                        "copy_probability": round(probability, 6), "verdict": kind}
            pairs.append(JudgedEdge(a, b, kind, probability, descriptor, evidence))
        weakest = min(pairs, key=lambda e: e.descriptor)
        saved.append(Group(kind, members, paths, weakest.descriptor, {"pair": [weakest.a, weakest.b], **weakest.evidence}))
        edges += pairs
    save_groups(library, "review", saved, edges, 0.57)
    return len(rows)


def build_search(library: Library, root: Path, images: int, rng: random.Random) -> int:
    """Rows up to ``images`` in collection ``search``, each with a random unit vector; the rows added."""
    collection_id, photos = photo_rows(library, "search")
    count = max(0, images - len(photos))
    keep = tuple(c for c in COPIED if c not in ("sha256", "phash"))  # not the photo as the catalog knows it
    rows = linked_rows([rng.choice(photos) for _ in range(count)], root / "links" / "search", keep)
    ids = add_rows(library, collection_id, rows)
    vectors_rng = np.random.default_rng(0)
    with library.writer_lock("search"), library.catalog.session() as s:
        stores = library.stores_for(s, library.get_collection(s, "search"))
        dim = library.embedder.dim
        for start in range(0, len(ids), ROW_BATCH):
            batch = np.array(ids[start:start + ROW_BATCH], dtype=np.int64)
            vectors = vectors_rng.standard_normal((len(batch), dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            stores.global_.upsert(batch, vectors)
        stores.persist()
    return count


def build(root: Path, settings: Settings, groups: int, images: int) -> None:
    """The library: the photos indexed into both collections, then the synthetic rows, groups and vectors."""
    photos = write_photos(root / "photos")
    library = Library(settings)
    rng = random.Random(0)
    try:
        for collection in ("review", "search"):
            started = time.perf_counter()
            report = index_paths(library, collection, [photos])
            print(f"  {collection}: {report.indexed} real photos indexed in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        added = build_review(library, root, groups, rng)
        print(f"  review: {added:,} member rows (hard links) and {groups:,} groups saved in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        added = build_search(library, root, images, rng)
        print(f"  search: {added:,} synthetic rows (hard links) with random vectors in {time.perf_counter() - started:.1f} s",
              flush=True)
    finally:
        library.close()


@contextmanager
def serving(settings: Settings):
    """The real app on a werkzeug thread; yields its base URL."""
    from werkzeug.serving import make_server

    from api import create_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    app = create_app(settings)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        app.extensions["dinoseek"].close()


@contextmanager
def chromium():
    """Headless Chromium with the page probe installed on every new document."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    driver.set_script_timeout(120)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PAGE_PROBE})
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, script: str, what: str, timeout: float = 120):
    """The script's value once truthy, polled every 10 ms."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=POLL).until(lambda d: d.execute_script(script),
                                                                     message=f"waiting for {what}")


def sign_in(driver, base: str) -> None:
    """Sign in through the page with the bench key."""
    driver.get(f"{base}/")
    wait_for(driver, "return document.body.dataset.ready === 'collections' && document.querySelector('#key')", "sign-in page")
    driver.find_element("css selector", "#key").send_keys(KEY)
    driver.find_element("css selector", "#signin").click()
    wait_for(driver, "return document.body.dataset.ready === 'collections' && !document.querySelector('#key')", "signed in")


def open_duplicates(driver, base: str) -> tuple[float, float, list[tuple[float, str]]]:
    """One open of the review page: in-page ms, wall ms, and its API requests' ms (slowest first; thumbnails left out)."""
    started = time.perf_counter()
    driver.get(f"{base}/duplicates?c=review")
    wait_for(driver, "return window.__bench && window.__bench.groups", "the first groups")
    wall = 1000 * (time.perf_counter() - started)
    page = driver.execute_script("return window.__bench.groups")
    requests = driver.execute_script("""return performance.getEntriesByType('resource')
        .filter((e) => e.name.includes('/api/') && !e.name.includes('/thumbnail') && e.startTime < window.__bench.groups)
        .map((e) => [e.duration, new URL(e.name).pathname]);""")
    return page, wall, sorted(((d, p) for d, p in requests), reverse=True)


def search_once(driver, base: str, query: Path) -> tuple[float, float, str, int]:
    """One search by upload: in-page ms (change event → first tile), wall ms (send_keys → tile
    seen), the first result's file name, and the result count."""
    driver.get(f"{base}/search?c=search")
    wait_for(driver, "return document.body.dataset.ready === 'search'", "the search page")
    field = driver.find_element("css selector", "input[type=file]")
    started = time.perf_counter()
    field.send_keys(str(query))
    wait_for(driver, "return document.querySelector('#results .tile')", "the first result")
    wall = 1000 * (time.perf_counter() - started)
    page = wait_for(driver, "const b = window.__bench; return b.tile != null && b.tile - b.chosen", "the page's clock")
    first = driver.execute_script("return document.querySelector('#results .tile .name').textContent")
    count = driver.execute_script("return document.querySelectorAll('#results .tile').length")
    return page, wall, first, count


def spread(values: list[float]) -> str:
    """Median and max of milliseconds."""
    return f"median {statistics.median(values):.0f} ms, max {max(values):.0f} ms"


def measure(settings: Settings, root: Path, args) -> None:
    """Drive the pages and print one line per figure."""
    query = edited_copy(root / f"edited-{QUERY_SOURCE}.jpg")
    with serving(settings) as base, chromium() as driver:
        sign_in(driver, base)
        opens = [open_duplicates(driver, base) for _ in range(args.repeat)]
        groups_shown = driver.execute_script("return document.querySelectorAll('#groups .group').length")
        clicks = []
        for _ in range(args.repeat):
            time.sleep(0.3)  # the shown thumbnails load first, as they would before a reviewer clicks
            clicks.append(driver.execute_async_script(MORE_GROUPS))
        cold = search_once(driver, base, query)
        searches = [search_once(driver, base, query) for _ in range(args.searches)]
    params = f"--groups {args.groups} --images {args.images} --model {args.model or 'tiny-random'} --repeat {args.repeat}"
    page, wall = [o[0] for o in opens], [o[1] for o in opens]
    print(f"\nduplicates page, open to first {groups_shown} groups ({args.groups:,} groups saved; {params}): "
          f"in page {spread(page)} (first open {page[0]:.0f} ms); wall {spread(wall)}")
    slowest = opens[-1][2][:4]
    print("  its slowest API requests before the groups showed (last open; thumbnails left out): "
          + ", ".join(f"{p} {d:.0f} ms" for d, p in slowest))
    dom, frame = [c[0] for c in clicks], [c[1] for c in clicks]
    print(f"duplicates page, More groups to the next {clicks[0][2]} cards ({params}): in page, to the DOM {spread(dom)}; "
          f"to the next frame {spread(frame)}")
    page, wall = [s[0] for s in searches], [s[1] for s in searches]
    right = sum(s[2] == f"{QUERY_SOURCE}.jpg" for s in searches + [cold])
    print(f"search by upload, first result tile at {args.images:,} images ({params}, --searches {args.searches}): "
          f"in page {spread(page)} (first search {cold[0]:.0f} ms); wall {spread(wall)}; "
          f"first result the source photo in {right} of {len(searches) + 1} ({cold[3]} results shown)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=10_000, help="saved duplicate groups in the review collection")
    parser.add_argument("--images", type=int, default=100_000, help="images in the search collection")
    parser.add_argument("--model", type=Path, default=None, help="checkpoint (default: a tiny random ViT-Ti/14)")
    parser.add_argument("--repeat", type=int, default=10, help="opens of the review page, and More groups clicks")
    parser.add_argument("--searches", type=int, default=5, help="timed searches by upload (after one warm-up)")
    parser.add_argument("--keep", type=Path, default=None, help="build the library in DIR and keep it")
    args = parser.parse_args()
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        raise SystemExit(f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
    root = (args.keep or Path(tempfile.mkdtemp(prefix="bench-web-"))).resolve()
    try:
        model = args.model.resolve() if args.model else tiny_model(root / "tiny.pt")
        home = root / "home"
        settings = replace(load_settings({}), home=home, database_url=f"sqlite:///{home / 'dinoseek.db'}",
                           vector_backend="faiss", model=str(model), api_keys=(KEY,), allowed_roots=(root,))
        print(f"building in {root}", flush=True)
        started = time.perf_counter()
        build(root, settings, args.groups, args.images)
        print(f"  setup: {time.perf_counter() - started:.1f} s", flush=True)
        measure(settings, root, args)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
