import pytest
from torch import nn

from detector.errors import ConfigError
from detector.registry import BACKBONES, NECKS, Registry


def make_registry():
    reg = Registry("WIDGETS")

    @reg.register()
    class Sprocket:
        def __init__(self, teeth: int, width: float = 1.0):
            self.teeth, self.width = teeth, width

    @reg.register("gear")
    class Gear:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    return reg


def test_build_by_type_with_arguments():
    reg = make_registry()
    obj = reg.build({"type": "Sprocket", "teeth": 12})
    assert (obj.teeth, obj.width) == (12, 1.0)
    assert reg.build({"type": "gear", "a": 1}).kwargs == {"a": 1}
    assert reg.names() == ["Sprocket", "gear"]


def test_unknown_type_names_registry_and_closest_names():
    reg = make_registry()
    with pytest.raises(ConfigError) as err:
        reg.build({"type": "Sprockett"}, "model.widget")
    assert str(err.value) == "model.widget.type: unknown WIDGETS type 'Sprockett'; did you mean 'Sprocket'?"


def test_unknown_type_without_close_match_lists_registered():
    with pytest.raises(ConfigError, match=r"unknown WIDGETS type 'zzz'; registered: Sprocket, gear"):
        make_registry().build({"type": "zzz"}, "x")


def test_wrong_argument_names_config_path_and_class():
    with pytest.raises(ConfigError) as err:
        NECKS.build({"type": "PAFPN", "in_channel": [1, 2, 3]}, "model.neck")
    assert str(err.value) == "model.neck.in_channel: PAFPN has no argument 'in_channel'; did you mean 'in_channels'?"


def test_missing_argument_names_config_path_and_class():
    with pytest.raises(ConfigError) as err:
        NECKS.build({"type": "PAFPN", "depth": 0.33}, "model.neck")
    assert str(err.value) == "model.neck.in_channels: missing, required by PAFPN"


def test_missing_type_and_non_mapping():
    with pytest.raises(ConfigError, match=r"^model.backbone.type: missing; expected one of CSPDarknet, Darknet53"):
        BACKBONES.build({"depth": 1.0}, "model.backbone")
    with pytest.raises(ConfigError, match=r"^model.backbone: expected a mapping"):
        BACKBONES.build(["CSPDarknet"], "model.backbone")


def test_duplicate_registration_is_refused():
    reg = make_registry()
    with pytest.raises(KeyError, match="already has an entry named 'gear'"):
        reg.register("gear")(nn.Identity)


def test_product_registries_exist():
    from detector import registry

    for name in ("BACKBONES", "NECKS", "HEADS", "ASSIGNERS", "LOSSES", "DATASETS", "TRANSFORMS", "TRACKERS"):
        assert getattr(registry, name).name == name
