"""Settings: environment over TOML, validation that names the setting."""

from __future__ import annotations

import pytest

from dinoseek.settings import SettingsError, load_settings


def test_defaults_live_under_home(tmp_path) -> None:
    s = load_settings(env={"DINOSEEK_HOME": str(tmp_path)})
    assert s.home == tmp_path and s.database_url == f"sqlite:///{tmp_path / 'dinoseek.db'}"
    assert s.vector_backend == "faiss" and s.device == "auto" and s.broker_url is None
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
