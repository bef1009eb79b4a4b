"""The findings contract: docs/findings.md is the copy every clone has of the shared contract
(../shared/spec/findings.md, beside the developers' checkouts); the code keeps to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from torchdoctor.rules import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "docs" / "findings.md"
SHARED = ROOT.parent / "shared" / "spec" / "findings.md"


def contract_codes() -> set[str]:
    """The codes of the contract's table: its first column."""
    return set(re.findall(r"^\| `([a-z_]+)` \|", CONTRACT.read_text(), flags=re.MULTILINE))


def test_every_rule_code_is_in_the_contract():
    codes = contract_codes()
    assert len(codes) >= 20, "the contract's code table was not found"
    for code in REGISTRY:
        assert code in codes, f"{code} is not in docs/findings.md"


def test_every_rule_has_the_contracts_severity():
    table = dict(re.findall(r"^\| `([a-z_]+)` \| ([a-z/]+) \|", CONTRACT.read_text(), flags=re.MULTILINE))
    for code, rule in REGISTRY.items():
        assert rule.severity.label in table[code].split("/"), (code, rule.severity.label, table[code])


def test_the_repo_copy_is_the_shared_contract():
    if not SHARED.exists():
        pytest.skip("no ../shared beside this checkout (a user's clone): docs/findings.md stands alone")
    assert CONTRACT.read_text() == SHARED.read_text(), "docs/findings.md differs from ../shared/spec/findings.md"


def test_the_readme_links_the_contract_in_the_repo():
    readme = (ROOT / "README.md").read_text()
    assert "docs/findings.md" in readme and "../shared" not in readme
