import pytest

from app.settings import ConfigError, load_config


def test_environment_overrides_defaults_and_overrides_win() -> None:
    env = {"OMNISTOCK_PAGE_SIZE_MAX": "50", "OMNISTOCK_DATABASE_URL": "sqlite:///x.db", "OTHER": "1"}
    cfg = load_config({"PAGE_SIZE_MAX": 7}, environ=env)
    assert cfg["PAGE_SIZE_MAX"] == 7
    assert cfg["DATABASE_URL"] == "sqlite:///x.db"
    assert "OTHER" not in cfg


def test_environment_values_take_the_type_of_their_default() -> None:
    cfg = load_config(environ={"OMNISTOCK_PAGE_SIZE_MAX": "50", "OMNISTOCK_DATABASE_POOL_PRE_PING": "true"})
    assert cfg["PAGE_SIZE_MAX"] == 50
    assert cfg["DATABASE_POOL_PRE_PING"] is True


def test_a_malformed_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="OMNISTOCK_PAGE_SIZE_MAX"):
        load_config(environ={"OMNISTOCK_PAGE_SIZE_MAX": "lots"})


def test_the_default_database_is_a_sqlite_file_in_the_instance_folder(tmp_path) -> None:
    cfg = load_config({"INSTANCE_PATH": str(tmp_path)}, environ={})
    assert cfg["DATABASE_URL"] == f"sqlite:///{tmp_path}/omnistock.db"
