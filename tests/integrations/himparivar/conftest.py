"""The hospital-flow fixtures (facilities, staff tokens, registration) for the register's tests."""

from tests.his.conftest import facilities, register, staff, steward  # noqa: F401
