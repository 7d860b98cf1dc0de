"""The test endpoint, started and stopped around each test of the model client."""

import pytest
from fake_endpoint import FakeEndpoint


@pytest.fixture
def fake():
    with FakeEndpoint() as fe:
        yield fe
