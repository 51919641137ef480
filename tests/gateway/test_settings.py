"""Configuration from TOML and TOPICBRIDGE_* variables, validated against the JSON Schema."""

import pytest

from adapters.factory import engine_config, open_backend
from adapters.lite import EmbeddedLiteBackend
from adapters.lite_remote import RemoteLiteBackend
from gateway.settings import ConfigError, load


def test_defaults_select_the_embedded_lite_engine():
    settings = load(env={})
    assert settings["backend"] == "lite" and settings["lite"]["mode"] == "embedded"
    assert isinstance(open_backend(settings), EmbeddedLiteBackend)


def test_environment_overrides_the_file_and_is_typed(tmp_path):
    path = tmp_path / "tb.toml"
    path.write_text('backend = "lite"\n[lite]\nfsync = "never"\nsession_timeout = 5\n')
    settings = load(path, env={"TOPICBRIDGE_LITE__FSYNC": "always", "TOPICBRIDGE_LITE__MAX_ATTEMPTS": "3"})
    assert settings["lite"]["fsync"] == "always"
    assert settings["lite"]["session_timeout"] == 5
    config = engine_config(settings["lite"])
    assert (config.fsync, config.max_attempts, config.session_timeout) == ("always", 3, 5)


def test_remote_mode_builds_the_remote_adapter():
    settings = load(env={"TOPICBRIDGE_LITE__MODE": "remote", "TOPICBRIDGE_LITE__TARGET": "127.0.0.1:7601"})
    assert isinstance(open_backend(settings), RemoteLiteBackend)


def test_config_file_path_from_the_environment(tmp_path):
    path = tmp_path / "tb.toml"
    path.write_text("[gateway]\nport = 9999\n")
    assert load(env={"TOPICBRIDGE_CONFIG": str(path)})["gateway"]["port"] == 9999


def test_empty_data_dir_means_memory_only():
    settings = load(env={"TOPICBRIDGE_LITE__DATA_DIR": ""})
    assert engine_config(settings["lite"]).data_dir is None


@pytest.mark.parametrize("env,key,source", [
    ({"TOPICBRIDGE_BACKEND": "redis"}, "backend", "TOPICBRIDGE_BACKEND"),
    ({"TOPICBRIDGE_LITE__FSYNC": "sometimes"}, "lite.fsync", "TOPICBRIDGE_LITE__FSYNC"),
    ({"TOPICBRIDGE_LITE__SESSION_TIMEOUT": "soon"}, "lite.session_timeout", "TOPICBRIDGE_LITE__SESSION_TIMEOUT"),
    ({"TOPICBRIDGE_LITE__SESSION_TIMEOUT": "-1"}, "lite.session_timeout", "TOPICBRIDGE_LITE__SESSION_TIMEOUT"),
    ({"TOPICBRIDGE_LITE__MAX_ATTEMPTS": "2.5"}, "lite.max_attempts", "TOPICBRIDGE_LITE__MAX_ATTEMPTS"),
    ({"TOPICBRIDGE_LITE__NO_SUCH_KEY": "1"}, "lite.no_such_key", "TOPICBRIDGE_LITE__NO_SUCH_KEY"),
    ({"TOPICBRIDGE_NOPE": "1"}, "nope", "TOPICBRIDGE_NOPE"),
    ({"TOPICBRIDGE_LITE__TARGET": "no port"}, "lite.target", "TOPICBRIDGE_LITE__TARGET"),
    ({"TOPICBRIDGE_GATEWAY__PORT": "70000"}, "gateway.port", "TOPICBRIDGE_GATEWAY__PORT"),
    ({"TOPICBRIDGE_GATEWAY__BEARER_TOKENS": "too-short"}, "gateway.bearer_tokens.0",
     "TOPICBRIDGE_GATEWAY__BEARER_TOKENS"),
    ({"TOPICBRIDGE_LITE": "x", "TOPICBRIDGE_LITE__FSYNC": "always"}, "lite.fsync", "TOPICBRIDGE_LITE__FSYNC"),
])
def test_bad_values_name_the_key_and_where_they_came_from(env, key, source):
    with pytest.raises(ConfigError) as err:
        load(env=env)
    assert err.value.key == key and err.value.source == source
    assert key in str(err.value) and source in str(err.value)


@pytest.mark.parametrize("text,reason", [
    ("backend = \n", "invalid TOML"),
    ("[lite]\nfsync = 3\n", "is not one of"),
    ("lite = 5\n", "is not of type"),
    ("[lite]\nmode = \"embedded\"\n[lite.deeper]\nx = 1\n", "unknown setting"),
])
def test_bad_files_are_reported(tmp_path, text, reason):
    path = tmp_path / "tb.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load(path, env={})
    assert reason in str(err.value)


def test_a_bad_list_item_names_the_variable_that_set_it_not_the_defaults(tmp_path):
    path = tmp_path / "tb.toml"
    path.write_text('[gateway]\nmcp_bearer_tokens = ["short"]\n')
    with pytest.raises(ConfigError) as from_file:
        load(path, env={})
    path.write_text('[gateway]\nport = 8080\n')
    with pytest.raises(ConfigError) as from_env:
        load(path, env={"TOPICBRIDGE_GATEWAY__BEARER_TOKENS": "short,also-short"})
    assert from_env.value.source == "TOPICBRIDGE_GATEWAY__BEARER_TOKENS"
    assert from_file.value.key == "gateway.mcp_bearer_tokens.0" and from_file.value.source == str(path)


def test_a_missing_file_is_reported(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path / "absent.toml", env={})
    assert "cannot read config file" in str(err.value)
