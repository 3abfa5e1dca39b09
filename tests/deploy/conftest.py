"""Fixtures only the deploy tests use."""

from __future__ import annotations

import pytest

from tests.deploy.terraform_support import TERRAFORM, Module


@pytest.fixture(scope="module")
def tf() -> Module:
    """Every block of every .tf file in deploy/terraform/."""
    return Module(TERRAFORM)
