"""Unit tests: pure, no server."""
import pytest

from tests.support.wsdl import WSDLS, soap_of


@pytest.fixture(scope="module", params=WSDLS)
def soap(request, tmp_path_factory):
    """zeep's shared side of the ECC calls, on each of the two WSDLs."""
    return soap_of(request.param, tmp_path_factory)
