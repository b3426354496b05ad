"""End-to-end tests on a real control plane (a package, so its conftest does not shadow
tests/conftest.py as the module `conftest`)."""
