"""The Qdrant server store as the product opens it: collection layout from dinoseek's settings, the
API key on every request, the image_id payload of patch cells.

No Qdrant server runs on these machines. The layout goes through the real chain (environment →
Settings → Library → open_store → QdrantServerStore's create-collection code) into qdrant-client's
local mode, which reports back the configuration it was given. The API key goes through a real
QdrantClient over HTTP to a small stand-in server on loopback, which records each request's
``api-key`` header and the bodies the client sends (what a real server would be asked to create).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

import indexer.stores.qdrant_server_store as qss
from dinoseek.settings import load_settings
from indexer.library import Library
from indexer.stores import QdrantConfig, StoreSpec, open_store
from indexer.stores.qdrant_multivector_store import QdrantMultivectorStore

# Local mode searches by brute force and says so; an API key over plain http makes the client warn.
pytestmark = [pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning"),
              pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection:UserWarning")]

KEY = "k-7f3a-secret"


def _library(tmp_path: Path, **env: str) -> Library:
    settings = load_settings(env={"DINOSEEK_HOME": str(tmp_path / "home"), "DINOSEEK_VECTOR_BACKEND": "qdrant",
                                  **{f"DINOSEEK_{k.upper()}": v for k, v in env.items()}})
    return Library(settings)


def _vector_params(client: QdrantClient, name: str):
    return client.get_collection(name).config.params.vectors


# ---------------------------------------------------------------------------------- layout
@pytest.mark.parametrize("env,expected", [
    ({}, dict(m=16, ef=100, int8=True, on_disk=False)),
    ({"qdrant_hnsw_m": "32", "qdrant_hnsw_ef_construct": "256", "qdrant_on_disk": "true"},
     dict(m=32, ef=256, int8=True, on_disk=True)),
    ({"qdrant_hnsw_m": "0", "qdrant_hnsw_ef_construct": "4", "qdrant_quantization": "none", "qdrant_on_disk": "no"},
     dict(m=0, ef=4, int8=False, on_disk=False)),
    ({"qdrant_patch_layout": "multivector", "qdrant_hnsw_m": "24"}, dict(m=24, ef=100, int8=True, on_disk=False)),
])
def test_collections_are_created_with_the_configured_layout(tmp_path: Path, monkeypatch, env, expected) -> None:
    clients: list[tuple[str, QdrantConfig]] = []

    def local(url: str, config: QdrantConfig | None = None, **kwargs) -> QdrantClient:
        clients.append((url, config))
        return QdrantClient(location=":memory:")  # one per store, as from_url makes one per store

    monkeypatch.setattr(qss, "connect", local)
    library = _library(tmp_path, qdrant_url="http://qdrant.invalid:6333", qdrant_api_key=KEY, **env)
    try:
        stores = library.stores("photos", 48, 24)
        assert [url for url, _ in clients] == ["http://qdrant.invalid:6333"]  # the patch store opens on first use
        assert stores.patches is not None
        assert [url for url, _ in clients] == ["http://qdrant.invalid:6333"] * 2
        assert all(cfg.api_key == KEY for _, cfg in clients)
        for store, dim, datatype in ((stores.global_, 48, "float32"), (stores.patches, 24, "float16")):
            client = store._open_client()
            params = _vector_params(client, store.collection)
            assert (params.size, params.distance.value, params.datatype.value) == (dim, "Cosine", datatype)
            assert (params.hnsw_config.m, params.hnsw_config.ef_construct) == (expected["m"], expected["ef"])
            assert bool(params.on_disk) is expected["on_disk"]
            if expected["int8"]:
                scalar = params.quantization_config.scalar
                assert scalar.type.value == "int8" and scalar.always_ram is True
            else:
                assert params.quantization_config is None
        multivector = env.get("qdrant_patch_layout") == "multivector"
        patch_params = _vector_params(stores.patches._open_client(), "photos.patches")
        assert _vector_params(stores.global_._open_client(), "photos.global").multivector_config is None
        if multivector:  # one point per image, its cells compared by MAX_SIM
            assert patch_params.multivector_config.comparator.value == "max_sim"
            assert isinstance(stores.patches, QdrantMultivectorStore)
        else:
            assert patch_params.multivector_config is None and type(stores.patches) is qss.QdrantServerStore
        # the patch cells record their stride; the global descriptors are keyed by image id alone
        meta = stores.patches._open_client().get_collection("photos.patches").config.metadata
        assert meta == ({qss.STRIDE_METADATA: 64, qss.LAYOUT_METADATA: "multivector"} if multivector
                        else {qss.STRIDE_METADATA: 64})
        assert not stores.global_._open_client().get_collection("photos.global").config.metadata
        # and the stores work under every layout
        x = np.random.default_rng(0).standard_normal((3, 48)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        stores.global_.upsert(np.array([1, 2, 3]), x)
        np.testing.assert_array_equal(stores.global_.search(x, 1).ids[:, 0], [1, 2, 3])
    finally:
        library.close()


def test_an_existing_collection_keeps_its_layout_and_its_stride(tmp_path: Path) -> None:
    client = QdrantClient(path=str(tmp_path / "local"))
    try:
        spec = StoreSpec("lib.patches", 8, "float16", id_stride=64)
        first = qss.QdrantServerStore(spec, client, config=QdrantConfig(hnsw_m=24))
        first.upsert(np.array([64, 65, 130]), np.eye(3, 8, dtype=np.float32))
        first.close()
        # opened again with other settings and a spec without the stride (a generic reader)
        again = qss.QdrantServerStore(StoreSpec("lib.patches", 8, "float16"), client,
                                      config=QdrantConfig(hnsw_m=48, quantization="none"))
        assert _vector_params(client, "lib.patches").hnsw_config.m == 24
        again.upsert(np.array([192]), np.eye(1, 8, dtype=np.float32))  # still writes image_id = 3
        record = client.retrieve("lib.patches", ids=[192], with_payload=True)[0]
        assert record.payload == {qss.IMAGE_ID: 3}
        assert again.delete(np.arange(64, 128)) == 2 and again.count() == 2
        with pytest.raises(qss.StoreError, match="strides of 64"):
            qss.QdrantServerStore(StoreSpec("lib.patches", 8, "float16", id_stride=16), client)
    finally:
        client.close()


def test_a_patch_collection_keeps_the_layout_it_was_created_with(tmp_path: Path, monkeypatch) -> None:
    """The layout setting applies when a collection is created: opened with the other setting, a
    patch collection is served in its own layout, and a store of the wrong layout is refused."""
    client = QdrantClient(path=str(tmp_path / "local"))

    class Shared:  # one local client behind every connect(); the stores must not close it
        def __getattr__(self, name):
            return getattr(client, name)

        def close(self) -> None:
            pass

    monkeypatch.setattr(qss, "connect", lambda url, config=None, **kw: Shared())
    spec = StoreSpec("lib.patches", 8, "float16", id_stride=64)
    cells = np.eye(3, 8, dtype=np.float32)
    try:
        first = open_store(spec, "qdrant", tmp_path, "http://q.invalid", QdrantConfig(patch_layout="multivector"))
        assert isinstance(first, QdrantMultivectorStore)
        first.upsert(np.array([64, 65, 130]), cells)
        first.close()
        again = open_store(spec, "qdrant", tmp_path, "http://q.invalid", QdrantConfig())
        assert isinstance(again, QdrantMultivectorStore) and again.count() == 3
        assert client.count("lib.patches").count == 2  # images 1 and 2: one point each
        record = client.retrieve("lib.patches", ids=[1], with_payload=True)[0]
        assert record.payload == {qss.SLOTS: [0, 1]}
        np.testing.assert_array_equal(again.search_images(cells[:2], 5)[0], [1, 2])
        with pytest.raises(qss.StoreError, match="multivector layout"):
            qss.QdrantServerStore(spec, client)
        points = open_store(StoreSpec("other.patches", 8, "float16", id_stride=64), "qdrant", tmp_path,
                            "http://q.invalid", QdrantConfig())
        assert type(points) is qss.QdrantServerStore
        with pytest.raises(qss.StoreError, match="points layout"):
            QdrantMultivectorStore(StoreSpec("other.patches", 8, "float16", id_stride=64), client)
        with pytest.raises(qss.StoreError, match="id stride"):
            QdrantMultivectorStore(StoreSpec("lib.global", 8), client)
        # the global descriptors are never multivectors, whatever the setting
        plain = open_store(StoreSpec("lib.global", 8), "qdrant", tmp_path, "http://q.invalid",
                           QdrantConfig(patch_layout="multivector"))
        assert type(plain) is qss.QdrantServerStore
    finally:
        client.close()


def test_a_collection_without_the_stride_metadata_deletes_by_id(tmp_path: Path) -> None:
    """A patch collection created before the payload existed: its points carry none, so deleting
    an image's cells must enumerate ids, not filter (which would find nothing)."""
    client = QdrantClient(path=str(tmp_path / "local"))
    try:
        old = qss.QdrantServerStore(StoreSpec("old.patches", 8, "float16"), client)
        old.upsert(np.array([64, 65, 66]), np.eye(3, 8, dtype=np.float32))
        old.close()
        new = qss.QdrantServerStore(StoreSpec("old.patches", 8, "float16", id_stride=64), client)
        assert new.delete(np.arange(64, 128)) == 3 and new.count() == 0
    finally:
        client.close()


# ---------------------------------------------------------------------------------- API key
class FakeQdrant(ThreadingHTTPServer):
    """Just enough of Qdrant's REST API for opening, dropping and health-checking stores; records
    (method, path, api-key header, JSON body) of every request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str, str | None, dict | None]] = []
        self.collections: dict[str, dict] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeQdrant

    def log_message(self, *args) -> None:
        pass

    def _answer(self, result, status: int = 200) -> None:
        body = json.dumps(result if self.path == "/" else {"result": result, "status": "ok", "time": 0.0}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = self.path.split("?")[0]
        self.server.requests.append((self.command, path, self.headers.get("api-key"), body))
        parts = path.strip("/").split("/")
        cols = self.server.collections
        if path == "/":
            return self._answer({"title": "qdrant - vector search engine", "version": "1.19.1"})
        if parts == ["collections"] and self.command == "GET":
            return self._answer({"collections": [{"name": n} for n in cols]})
        if len(parts) == 3 and parts[2] == "exists":
            return self._answer({"exists": parts[1] in cols})
        if len(parts) == 2 and self.command == "PUT":
            cols[parts[1]] = dict(body)  # the record keeps what was sent
            return self._answer(True)
        if len(parts) == 2 and self.command == "DELETE":
            return self._answer(cols.pop(parts[1], None) is not None)
        if len(parts) == 2 and self.command == "GET":
            created = cols[parts[1]]
            return self._answer({
                "status": "green", "optimizer_status": "ok", "segments_count": 2, "points_count": 0,
                "config": {"params": {"vectors": created["vectors"], "shard_number": 1},
                           "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
                           "optimizer_config": {"default_segment_number": 0, "flush_interval_sec": 5},
                           "wal_config": {"wal_capacity_mb": 32, "wal_segments_ahead": 0},
                           "metadata": created.get("metadata")},
                "payload_schema": created.get("payload_schema", {})})
        if len(parts) == 3 and parts[2] == "index" and self.command == "PUT":
            cols[parts[1]].setdefault("payload_schema", {})[body["field_name"]] = {"data_type": "integer", "points": 0}
            return self._answer({"operation_id": 1, "status": "completed"})
        return self._answer({"error": f"not faked: {self.command} {path}"}, 404)

    do_GET = do_PUT = do_POST = do_DELETE = _handle


@pytest.fixture
def fake_qdrant() -> Iterator[FakeQdrant]:
    server = FakeQdrant()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    # each client checks the server's version from a thread of its own: let those requests land
    deadline, seen = time.monotonic() + 5, -1
    while time.monotonic() < deadline and (seen != len(server.requests) or not any(p == "/" for _, p, _, _ in server.requests)):
        seen = len(server.requests)
        time.sleep(0.2)
    server.shutdown()
    server.server_close()


def test_the_api_key_and_layout_reach_the_server(tmp_path: Path, fake_qdrant: FakeQdrant) -> None:
    from indexer.health import check_health

    library = _library(tmp_path, qdrant_url=fake_qdrant.url, qdrant_api_key=KEY, qdrant_hnsw_m="24",
                       qdrant_hnsw_ef_construct="150", qdrant_on_disk="1")
    try:
        stores = library.stores("photos", 48, 24, generation=2)  # open_store: creates the global collection
        assert stores.patches is not None  # and the patch collection on first use
        library.release_stores("photos")
        library.drop_generation("photos", 2)  # drop_store: deletes them
        health = check_health(library)  # the API's /health: lists the server's collections
    finally:
        library.close()
    assert health["checks"]["vector_store"]["ok"], health
    seen = fake_qdrant.requests
    assert seen and {key for _, _, key, _ in seen} == {KEY}, [(m, p, k) for m, p, k, _ in seen]
    done = {(method, path) for method, path, _, _ in seen}
    for name in ("photos~g2.global", "photos~g2.patches"):
        assert ("PUT", f"/collections/{name}") in done and ("DELETE", f"/collections/{name}") in done
    assert ("GET", "/collections") in done and ("PUT", "/collections/photos~g2.patches/index") in done
    assert ("PUT", "/collections/photos~g2.global/index") not in done
    assert not fake_qdrant.collections

    created = {path.rsplit("/", 1)[1]: body for method, path, _, body in seen
               if method == "PUT" and path.count("/") == 2}
    for name, dim, datatype in (("photos~g2.global", 48, "float32"), ("photos~g2.patches", 24, "float16")):
        vectors = created[name]["vectors"]
        assert vectors["size"] == dim and vectors["distance"] == "Cosine" and vectors["datatype"] == datatype
        assert vectors["hnsw_config"] == {"m": 24, "ef_construct": 150}
        assert vectors["quantization_config"] == {"scalar": {"type": "int8", "always_ram": True}}
        assert vectors["on_disk"] is True
    assert created["photos~g2.patches"]["metadata"] == {qss.STRIDE_METADATA: 64}
    assert "metadata" not in created["photos~g2.global"]
    index = next(body for method, path, _, body in seen if path.endswith("/index"))
    assert index["field_name"] == qss.IMAGE_ID and index["field_schema"]["type"] == "integer"
    assert stores is not None


def test_without_a_key_the_client_sends_none(tmp_path: Path, fake_qdrant: FakeQdrant) -> None:
    store = open_store(StoreSpec("plain.global", 8), "qdrant", tmp_path, fake_qdrant.url)
    store.close()
    assert fake_qdrant.requests and all(key is None for _, _, key, _ in fake_qdrant.requests)
    sent = next(body for method, path, _, body in fake_qdrant.requests if method == "PUT")["vectors"]
    assert sent["hnsw_config"] == {"m": 16, "ef_construct": 100} and sent["on_disk"] is False


# ---------------------------------------------------------------------------------- TLS (the fleet's CA)
def test_the_config_from_settings_carries_https_and_the_ca() -> None:
    settings = load_settings(env={"DINOSEEK_VECTOR_BACKEND": "qdrant", "DINOSEEK_QDRANT_URL": "https://qdrant:6333",
                                  "DINOSEEK_QDRANT_CA_FILE": "/etc/dinoseek/qdrant-ca/ca.pem", "DINOSEEK_QDRANT_API_KEY": KEY,
                                  "DINOSEEK_QDRANT_HNSW_M": "24"})
    config = QdrantConfig.from_settings(settings)
    assert (config.ca_file, config.api_key, config.hnsw_m) == ("/etc/dinoseek/qdrant-ca/ca.pem", KEY, 24)
    assert KEY not in repr(config) and "ca_file='/etc/dinoseek/qdrant-ca/ca.pem'" in repr(config)


def test_the_library_hands_the_ca_to_its_qdrant_clients(tmp_path: Path) -> None:
    library = _library(tmp_path, qdrant_url="https://qdrant:6333", qdrant_ca_file=str(tmp_path / "ca.pem"))
    try:
        assert library.qdrant_config == QdrantConfig.from_settings(library.settings)
    finally:
        library.close()


@pytest.fixture
def fleet_certs(tmp_path: Path):
    """The certs service's files for a stand-in server on this machine (host name localhost)."""
    from tests.test_compose import make_certs

    return make_certs(tmp_path / "fleet", names="localhost")


def test_the_client_trusts_the_fleet_ca_and_sends_the_key_over_tls(fleet_certs) -> None:
    from tests.test_compose import tls_server

    server = FakeQdrant()
    with tls_server(server, fleet_certs) as port:
        url = f"https://localhost:{port}"
        client = qss.connect(url, QdrantConfig(api_key=KEY, ca_file=str(fleet_certs.ca)))
        try:
            assert client.get_collections().collections == []
        finally:
            client.close()
    assert [(method, path, key) for method, path, key, _ in server.requests] == [("GET", "/collections", KEY)]


def test_the_client_refuses_a_server_its_ca_did_not_sign(tmp_path: Path, fleet_certs) -> None:
    from tests.test_compose import make_certs, tls_server

    stranger = make_certs(tmp_path / "stranger", names="localhost")
    server = FakeQdrant()
    with tls_server(server, fleet_certs) as port:
        url = f"https://localhost:{port}"
        for config in (QdrantConfig(api_key=KEY, ca_file=str(stranger.ca)),  # another CA
                       QdrantConfig(api_key=KEY)):  # the public trust store: the fleet's CA is not in it
            client = qss.connect(url, config, timeout=5, check_compatibility=False)  # no version probe to warn
            try:
                with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
                    client.get_collections()
            finally:
                client.close()
    assert not any(path == "/collections" for _, path, _, _ in server.requests), "the key went to an unverified server"


def test_a_ca_file_needs_https_and_a_readable_certificate(tmp_path: Path) -> None:
    from dinoseek.settings import SettingsError
    from indexer.stores.base import StoreError

    with pytest.raises(SettingsError, match="DINOSEEK_QDRANT_CA_FILE needs an https:// DINOSEEK_QDRANT_URL"):
        load_settings(env={"DINOSEEK_QDRANT_URL": "http://qdrant:6333", "DINOSEEK_QDRANT_CA_FILE": "/ca.pem"})
    with pytest.raises(StoreError, match="is not https://"):
        qss.connect("http://qdrant:6333", QdrantConfig(ca_file="/ca.pem"))
    missing = tmp_path / "nowhere" / "ca.pem"
    with pytest.raises(StoreError, match=f"DINOSEEK_QDRANT_CA_FILE: cannot load a CA certificate from {missing}"):
        qss.connect("https://qdrant:6333", QdrantConfig(ca_file=str(missing)))
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(StoreError, match="DINOSEEK_QDRANT_CA_FILE: cannot load a CA certificate from .*junk.pem"):
        qss.connect("https://qdrant:6333", QdrantConfig(ca_file=str(tmp_path / "junk.pem")))
