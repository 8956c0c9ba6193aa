"""Training settings: presets, and ``--set KEY=VALUE`` overrides parsed as each field's type."""

from __future__ import annotations

import pytest

from model.train.config import preset


def test_set_overrides_parse_each_fields_type() -> None:
    cfg = preset("cpu-tiny").with_settings(["copy_entropy_weight=7", "mask_ratio=0.1,0.4", "ibot_separate_head=true",
                                            "steps=77", "centering=softmax"])
    assert cfg.copy_entropy_weight == 7.0 and isinstance(cfg.copy_entropy_weight, float)
    assert cfg.mask_ratio == (0.1, 0.4) and cfg.ibot_separate_head is True and cfg.steps == 77
    assert cfg.centering == "softmax" and cfg.arch == "vitt14"  # the rest of the preset is untouched


@pytest.mark.parametrize("item, message", [
    ("nope=1", "expected KEY=VALUE"), ("steps", "expected KEY=VALUE"), ("steps=many", "not a valid int"),
    ("ibot_separate_head=maybe", "not a valid bool"), ("centering=median", "centering must be"),
])
def test_bad_set_overrides_name_the_problem(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        preset("cpu-tiny").with_settings([item])
