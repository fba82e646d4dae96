"""The documentation stays true to the code."""
from __future__ import annotations

from pathlib import Path

import yaml

from features.catalogue import catalogue_markdown
from pipelines.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_readme_holds_the_current_feature_catalogue():
    assert catalogue_markdown() in (ROOT / "README.md").read_text(), "run `churn catalogue` and paste it into README.md"


def test_default_yaml_spells_out_the_built_in_defaults():
    assert load_settings(ROOT / "configs" / "default.yaml") == Settings()
    assert set(yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())) == set(Settings.model_fields)
