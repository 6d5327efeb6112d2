"""Typed config reader (mner.config): nested dataclass fields."""

from dataclasses import dataclass, field

import pytest

from mner.config import ConfigError, from_dict, to_dict


@dataclass
class Inner:
    name: str = "minilm"
    size: int = 2


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    maybe: Inner | None = None


def test_nested_mapping_and_instance_are_accepted():
    cfg = from_dict(Outer, {"inner": {"name": "mpnet"}, "maybe": {"size": 3}})
    assert cfg == Outer(Inner(name="mpnet"), Inner(size=3))
    assert from_dict(Outer, to_dict(cfg)) == cfg
    inner = Inner(size=5)
    assert from_dict(Outer, {"inner": inner}).inner is inner


def test_optional_nested_field_accepts_none():
    assert from_dict(Outer, {"maybe": None}).maybe is None


@pytest.mark.parametrize("value", ["minilm", 3, ["name", "minilm"], None])
def test_nested_field_refuses_a_non_mapping(value):
    with pytest.raises(ConfigError, match=r"^model\.inner: expected a mapping"):
        from_dict(Outer, {"inner": value}, "model")


@pytest.mark.parametrize("value", ["minilm", 0])
def test_optional_nested_field_refuses_a_non_mapping(value):
    with pytest.raises(ConfigError, match=r"^maybe: expected a mapping"):
        from_dict(Outer, {"maybe": value})


def test_maf_config_refuses_an_encoder_name_in_place_of_its_section():
    from mner.models.maf.config import MAFConfig

    with pytest.raises(ConfigError, match="text_encoder: expected a mapping"):
        from_dict(MAFConfig, {"text_encoder": "minilm"})
