import pytest

from engine.config import Config, ConfigError, default_config_text, load_config


def test_default_file_loads_to_the_builtin_defaults(tmp_path):
    path = tmp_path / "engine.toml"
    path.write_text(default_config_text())
    assert load_config(path, environ={}) == Config()


def test_precedence_file_then_env_then_cli(tmp_path):
    path = tmp_path / "engine.toml"
    path.write_text('[sampling]\nmask_frames = 8\nannotator_frames = 4\n[agents.annotator]\nmodel = "from-file"\n')
    env = {"ENGINE_SAMPLING__MASK_FRAMES": "12", "ENGINE_AGENTS__ANNOTATOR__MODEL": "from-env"}
    cfg = load_config(path, overrides={"sampling.mask_frames": 16}, environ=env)
    assert cfg.sampling.mask_frames == 16  # CLI beats env and file
    assert cfg.agents.annotator.model == "from-env"  # env beats file
    assert cfg.sampling.annotator_frames == 4  # file beats default
    assert cfg.agents.analyzer.model == Config().agents.analyzer.model


def test_bad_value_names_key_value_and_source(tmp_path):
    path = tmp_path / "engine.toml"
    path.write_text("[sampling]\nmask_frames = -3\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, environ={})
    msg = str(e.value)
    assert "sampling.mask_frames" in msg and "-3" in msg and str(path) in msg


def test_env_error_names_the_variable():
    with pytest.raises(ConfigError, match="ENGINE_SEGMENTOR__IMAGE_SIZE") as e:
        load_config(environ={"ENGINE_SEGMENTOR__IMAGE_SIZE": "huge"})
    assert "'huge'" in str(e.value)


def test_unknown_key_is_an_error_not_ignored(tmp_path):
    path = tmp_path / "engine.toml"
    path.write_text("[segmentor]\nbox_treshold = 0.3\n")
    with pytest.raises(ConfigError, match="unknown config key 'segmentor.box_treshold'"):
        load_config(path, environ={})


def test_api_key_pasted_instead_of_its_variable_name_is_rejected():
    with pytest.raises(ConfigError, match="agents.reviewer.api_key_env"):
        load_config(environ={"ENGINE_AGENTS__REVIEWER__API_KEY_ENV": "sk-abc123-secret"})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[sampling\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, environ={})


def test_config_path_from_env_and_default_database_url(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    path.write_text(f'data_dir = "{tmp_path / "d"}"\n')
    cfg = load_config(environ={"ENGINE_CONFIG": str(path)})
    assert cfg.resolved_database_url == f"sqlite:///{tmp_path / 'd' / 'engine.sqlite'}"
    cfg = load_config(environ={"ENGINE_DATABASE_URL": "postgresql+psycopg://u@h/db"})
    assert cfg.resolved_database_url == "postgresql+psycopg://u@h/db"


def test_ray_resources_merge_with_defaults_and_reject_unknown_roles():
    cfg = load_config(environ={"ENGINE_RAY__RESOURCES": '{"segmentor": {"num_gpus": 0.5, "replicas": 2}}'})
    assert cfg.ray.resources["segmentor"].num_gpus == 0.5
    assert cfg.ray.resources["segmentor"].replicas == 2
    assert cfg.ray.resources["segmentor"].max_concurrency == 2  # the role's own default, not the generic one
    assert cfg.ray.resources["model"].max_concurrency == 64  # roles not given keep their defaults
    with pytest.raises(ConfigError, match="unknown role"):
        load_config(environ={"ENGINE_RAY__RESOURCES": '{"segmenter": {}}'})
