from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from nbp.config import load_config
from nbp.errors import ConfigError
from nbp.workspace import CHECKOUT, Workspace


def test_an_overlay_changes_one_product_field_and_keeps_the_rest(tmp_path: Path) -> None:
    base = load_config()
    key, other = list(base.products)[:2]
    overlay = tmp_path / "o.yaml"
    overlay.write_text(f"products:\n  {key}:\n    value: 2.5\n", encoding="utf-8")
    cfg = load_config(overlay)
    assert cfg.products[key].value == 2.5
    # the product's other fields and the other products come from the base files
    assert cfg.products[key].model_copy(update={"value": base.products[key].value}) == base.products[key]
    assert cfg.products[other] == base.products[other]
    assert set(cfg.products) == set(base.products)


def test_overlay_is_deep_merged(tmp_path: Path) -> None:
    overlay = tmp_path / "o.yaml"
    overlay.write_text("simulate:\n  customers: 123\n", encoding="utf-8")
    cfg = load_config(overlay)
    assert cfg.simulate.customers == 123
    # keys not in the overlay keep the base value
    assert cfg.simulate.months == load_config().simulate.months


def test_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    overlay = tmp_path / "o.yaml"
    overlay.write_text("simulate:\n  customerz: 5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="simulate.customerz"):
        load_config(overlay)


def test_a_renamed_key_names_its_new_name(tmp_path: Path) -> None:
    overlay = tmp_path / "o.yaml"
    overlay.write_text("training:\n  valid_months: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="training.valid_months.*now 'training.rolling_folds'"):
        load_config(overlay)


def test_missing_overlay_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_config_is_frozen() -> None:
    cfg = load_config()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.simulate.customers = 1  # type: ignore[misc]


def test_workspace_follows_nbp_home(nbp_home: Path) -> None:
    ws = Workspace.from_env()
    assert ws.home == nbp_home.resolve()
    assert ws.table("loans") == nbp_home.resolve() / "data" / "ingested" / "loans.parquet"


def test_workspace_defaults_to_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBP_HOME", raising=False)
    assert Workspace.from_env().home == CHECKOUT
    assert Workspace.from_env().mlruns_dir == CHECKOUT / "mlruns"
