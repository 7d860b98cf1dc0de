import pytest

from engine.config import SegmentorConfig, load_config
from engine.registry import segmentor_path
from engine.runtime.plugins import PluginError, backend_version, load_segmentor, resolve


class DummySegmentor:
    version = "dummy@1"

    def __init__(self, cfg=None):
        pass

    def segment(self, request, frames):
        return []


class ConfiguredSegmentor(DummySegmentor):
    @classmethod
    def version_for(cls, cfg):
        return f"configured@1|{cfg.image_size}"


class NoSegment:
    version = "x@1"


class NoVersion:
    def segment(self, request, frames):
        return []


class OneArgument:
    version = "x@1"

    def segment(self, request):
        return []


class Nothing:
    pass


def test_import_path_and_registered_name():
    assert resolve(f"{__name__}:DummySegmentor") is DummySegmentor
    assert load_segmentor(f"{__name__}:DummySegmentor") is DummySegmentor
    cfg = load_config(environ={"ENGINE_SEGMENTOR__BACKEND": "dataset_masks"})
    assert segmentor_path(cfg) == "agents.segmentor:DatasetMasksSegmentor"
    with pytest.raises(PluginError, match="unknown segmentor backend 'nope'"):
        segmentor_path(load_config(environ={"ENGINE_SEGMENTOR__BACKEND": "nope"}))


def test_version_from_the_class_or_from_the_config_without_building():
    assert backend_version(DummySegmentor, SegmentorConfig()) == "dummy@1"
    assert backend_version(ConfiguredSegmentor, SegmentorConfig(image_size=512)) == "configured@1|512"
    grounded = load_segmentor("agents.grounded_sam2:GroundedSam2Segmentor")
    a = backend_version(grounded, SegmentorConfig())
    b = backend_version(grounded, SegmentorConfig(box_threshold=0.5))
    assert a.startswith("grounded_sam2@1|sam2.1_hiera_b+") and a != b  # a threshold is part of the version


def test_errors_are_specific():
    with pytest.raises(PluginError, match="cannot import module 'no_such_pkg.mod'"):
        resolve("no_such_pkg.mod:X")
    with pytest.raises(PluginError, match="has no attribute 'Missing'"):
        resolve(f"{__name__}:Missing")
    with pytest.raises(PluginError, match=r"lacks a segment\(request, frames\) method"):
        load_segmentor(f"{__name__}:NoSegment")
    with pytest.raises(PluginError, match="lacks a `version` string class attribute"):
        load_segmentor(f"{__name__}:NoVersion")
    with pytest.raises(PluginError, match="taking two arguments"):
        load_segmentor(f"{__name__}:OneArgument")
    with pytest.raises(PluginError, match=r"lacks a segment\(request, frames\) method; a `version` string"):
        load_segmentor(f"{__name__}:Nothing")  # every problem at once
    with pytest.raises(PluginError, match="is not a class"):
        load_segmentor(f"{__name__}:DUMMY")


DUMMY = DummySegmentor()


def test_every_registered_backend_meets_the_protocol():
    from engine.registry import SEGMENTORS

    for path in SEGMENTORS.values():
        assert isinstance(backend_version(load_segmentor(path), SegmentorConfig()), str)
