"""Settings: environment over TOML, validation that names the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from dinoseek.settings import SettingsError, load_settings, secret_problems


def test_defaults_live_under_home(tmp_path) -> None:
    s = load_settings(env={"DINOSEEK_HOME": str(tmp_path)})
    assert s.home == tmp_path and s.database_url == f"sqlite:///{tmp_path / 'dinoseek.db'}"
    assert s.vector_backend == "auto" and s.device == "auto" and s.broker_url is None
    assert s.models_dir == tmp_path / "models"


def test_env_overrides_toml(tmp_path) -> None:
    cfg = tmp_path / "dinoseek.toml"
    cfg.write_text('vector_backend = "qdrant"\ndevice = "cpu"\napi_keys = ["a", "b:ro"]\n')
    s = load_settings(env={"DINOSEEK_CONFIG": str(cfg), "DINOSEEK_DEVICE": "cuda",
                           "DINOSEEK_ALLOWED_ROOTS": f"{tmp_path}:/srv/photos"})
    assert s.vector_backend == "qdrant" and s.device == "cuda" and s.api_keys == ("a", "b:ro")
    assert s.allowed_roots[0] == tmp_path.resolve()


@pytest.mark.parametrize("env,pattern", [
    ({"DINOSEEK_VECTOR_BACKEND": "milvus"}, "DINOSEEK_VECTOR_BACKEND"),
    ({"DINOSEEK_DEVICE": "tpu"}, "DINOSEEK_DEVICE"),
    ({"DINOSEEK_API_KEYS": "k1,k2:rw"}, "KEY or KEY:ro"),
    ({"DINOSEEK_CONFIG": "/nonexistent/x.toml"}, "cannot read"),
    ({"DINOSEEK_DEVICE": "cuda:"}, "DINOSEEK_DEVICE: cuda:N needs a GPU number"),
    ({"DINOSEEK_DEVICE": "cuda:-1"}, "DINOSEEK_DEVICE: cuda:N needs a GPU number"),
    ({"DINOSEEK_DEVICE": "cuda:one"}, "DINOSEEK_DEVICE: cuda:N needs a GPU number"),
    ({"DINOSEEK_DEVICE": "cuda:1.5"}, "DINOSEEK_DEVICE: cuda:N needs a GPU number"),
    ({"DINOSEEK_DEVICE": "cpu:0"}, "DINOSEEK_DEVICE must be one of auto, cpu, cuda or cuda:N"),
    ({"DINOSEEK_QDRANT_HNSW_M": "-1"}, "DINOSEEK_QDRANT_HNSW_M must be at least 0"),
    ({"DINOSEEK_QDRANT_HNSW_M": "sixteen"}, "DINOSEEK_QDRANT_HNSW_M must be an integer"),
    ({"DINOSEEK_QDRANT_HNSW_EF_CONSTRUCT": "3"}, "DINOSEEK_QDRANT_HNSW_EF_CONSTRUCT must be at least 4"),
    ({"DINOSEEK_QDRANT_QUANTIZATION": "binary"}, "DINOSEEK_QDRANT_QUANTIZATION must be one of int8, none"),
    ({"DINOSEEK_QDRANT_ON_DISK": "maybe"}, "DINOSEEK_QDRANT_ON_DISK must be true or false"),
    ({"DINOSEEK_QDRANT_CA_FILE": "/ca.pem"}, "DINOSEEK_QDRANT_CA_FILE needs an https:// DINOSEEK_QDRANT_URL"),
    ({"DINOSEEK_QDRANT_CA_FILE": "/ca.pem", "DINOSEEK_QDRANT_URL": "http://qdrant:6333"},
     "DINOSEEK_QDRANT_CA_FILE needs an https://"),
])
def test_bad_values_name_the_setting(env, pattern) -> None:
    with pytest.raises(SettingsError, match=pattern):
        load_settings(env=env)


def test_bad_toml(tmp_path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("device = \n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(env={"DINOSEEK_CONFIG": str(cfg)})
    cfg.write_text('colour = "blue"\n')
    with pytest.raises(SettingsError, match="unknown settings colour"):
        load_settings(env={"DINOSEEK_CONFIG": str(cfg)})


def test_qdrant_server_settings(tmp_path) -> None:
    s = load_settings(env={})
    assert (s.qdrant_api_key, s.qdrant_hnsw_m, s.qdrant_hnsw_ef_construct) == (None, 16, 100)
    assert (s.qdrant_quantization, s.qdrant_on_disk) == ("int8", False)
    s = load_settings(env={"DINOSEEK_QDRANT_API_KEY": "sekret", "DINOSEEK_QDRANT_HNSW_M": "0",
                           "DINOSEEK_QDRANT_HNSW_EF_CONSTRUCT": "512", "DINOSEEK_QDRANT_QUANTIZATION": "NONE",
                           "DINOSEEK_QDRANT_ON_DISK": "True"})
    assert (s.qdrant_api_key, s.qdrant_hnsw_m, s.qdrant_hnsw_ef_construct) == ("sekret", 0, 512)
    assert (s.qdrant_quantization, s.qdrant_on_disk) == ("none", True)
    assert "sekret" not in repr(s)
    for off in ("false", "0", "no", "off"):
        assert load_settings(env={"DINOSEEK_QDRANT_ON_DISK": off}).qdrant_on_disk is False
    cfg = tmp_path / "dinoseek.toml"
    cfg.write_text('qdrant_on_disk = true\nqdrant_hnsw_m = 32\nqdrant_quantization = "none"\n')
    s = load_settings(env={"DINOSEEK_CONFIG": str(cfg)})
    assert (s.qdrant_on_disk, s.qdrant_hnsw_m, s.qdrant_quantization) == (True, 32, "none")
    cfg.write_text("qdrant_hnsw_m = 1.5\n")
    with pytest.raises(SettingsError, match="DINOSEEK_QDRANT_HNSW_M must be an integer"):
        load_settings(env={"DINOSEEK_CONFIG": str(cfg)})
    cfg.write_text('qdrant_on_disk = "sometimes"\n')
    with pytest.raises(SettingsError, match="DINOSEEK_QDRANT_ON_DISK"):
        load_settings(env={"DINOSEEK_CONFIG": str(cfg)})
    assert s.qdrant_patch_layout == "points"
    server = {"DINOSEEK_VECTOR_BACKEND": "qdrant", "DINOSEEK_QDRANT_URL": "http://qdrant:6333"}
    s = load_settings(env={**server, "DINOSEEK_QDRANT_PATCH_LAYOUT": "MultiVector"})
    assert s.qdrant_patch_layout == "multivector"
    with pytest.raises(SettingsError, match="DINOSEEK_QDRANT_PATCH_LAYOUT must be one of points, multivector"):
        load_settings(env={**server, "DINOSEEK_QDRANT_PATCH_LAYOUT": "grid"})
    for other in ({"DINOSEEK_VECTOR_BACKEND": "qdrant"}, {"DINOSEEK_QDRANT_URL": "http://qdrant:6333"}):
        with pytest.raises(SettingsError, match="DINOSEEK_QDRANT_PATCH_LAYOUT=multivector needs a Qdrant server"):
            load_settings(env={**other, "DINOSEEK_QDRANT_PATCH_LAYOUT": "multivector"})


@pytest.mark.parametrize("value,device", [("auto", "auto"), ("CPU", "cpu"), ("cuda", "cuda"), ("cuda:0", "cuda:0"),
                                          ("cuda:3", "cuda:3"), ("CUDA:07", "cuda:7")])
def test_device_takes_one_gpu_of_several(value, device) -> None:
    assert load_settings(env={"DINOSEEK_DEVICE": value}).device == device


def test_cli_device_option_takes_what_the_setting_takes() -> None:
    from dinoseek.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["embed", "x.jpg", "--device", "cuda:1"]).device == "cuda:1"
    assert parser.parse_args(["train", "--data", "d", "--out", "o", "--device", "CPU"]).device == "cpu"
    for bad in ("cuda:-1", "tpu"):
        with pytest.raises(SystemExit):
            parser.parse_args(["embed", "x.jpg", "--device", bad])


def test_the_qdrant_ca_file_goes_with_an_https_url(tmp_path) -> None:
    s = load_settings(env={"DINOSEEK_QDRANT_URL": "https://qdrant:6333", "DINOSEEK_QDRANT_CA_FILE": "~/ca.pem"})
    assert s.qdrant_ca_file == str(Path("~/ca.pem").expanduser()) and "qdrant_ca_file=" in repr(s)
    assert load_settings(env={}).qdrant_ca_file is None


@pytest.mark.parametrize("url,problem", [
    ("redis://:change-me-redis-password@redis:6379/0", "is a placeholder from .env.example"),
    ("redis://:CHANGE-ME-but-long-enough@redis:6379/0", "is a placeholder from .env.example"),
    ("redis://:%63hange-me-redis-password@redis:6379/0", "is a placeholder from .env.example"),  # URL-encoded
    ("redis://:short@redis:6379/0", "is shorter than 16 characters"),
    ("redis://:0123456789abcdef0123456789abcdef@redis:6379/0", None),
    ("redis://redis:6379/0", None),  # no password: nothing to check here (the fleet's compose file requires one)
])
def test_the_broker_password_is_refused_like_every_secret(url, problem) -> None:
    """Redis's password (REDIS_PASSWORD in the fleet) reaches dinoseek inside DINOSEEK_BROKER_URL: the
    API and the workers refuse it on the same terms as keys (check_secrets)."""
    found = secret_problems(load_settings(env={"DINOSEEK_BROKER_URL": url}))
    assert found == ([f"the password in DINOSEEK_BROKER_URL {problem}"] if problem else [])
