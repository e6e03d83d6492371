"""Every test carries the marker of its tier, the folder it lives in (tests/conftest.py)."""


def test_a_unit_test_is_marked_unit_and_nothing_else(request):
    markers = {marker.name for marker in request.node.iter_markers()}

    assert "unit" in markers
    assert not markers & {"integration", "cluster"}
