import pytest

from engine.runtime.plugins import PluginError, register, resolve


class DummySegmentor:
    pass


def test_import_path_and_registered_name():
    assert resolve("segmentor", f"{__name__}:DummySegmentor") is DummySegmentor
    register("segmentor", "dummy-test", f"{__name__}:DummySegmentor")
    assert resolve("segmentor", "dummy-test") is DummySegmentor


def test_errors_are_specific():
    with pytest.raises(PluginError, match="unknown segmentor backend 'nope'"):
        resolve("segmentor", "nope")
    with pytest.raises(PluginError, match="cannot import module 'no_such_pkg.mod'"):
        resolve("segmentor", "no_such_pkg.mod:X")
    with pytest.raises(PluginError, match="has no attribute 'Missing'"):
        resolve("segmentor", f"{__name__}:Missing")
