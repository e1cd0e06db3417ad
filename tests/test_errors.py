"""Every error the package raises by its own class is a GreenDeployError, so a caller (a node, the
CLI, a user's script) catches all of them with one except clause."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "green_deploy"
BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}


def _exception_classes_outside_the_hierarchy(tree: ast.Module) -> list[str]:
    return [
        f"{node.name}({', '.join(ast.unparse(base) for base in node.bases)})"
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and node.name != "GreenDeployError"
        and any(ast.unparse(base) in BUILTIN_EXCEPTIONS for base in node.bases)
    ]


def test_no_error_class_derives_from_a_builtin_exception_but_the_root():
    found = {
        str(path.relative_to(SRC)): classes
        for path in sorted(SRC.rglob("*.py"))
        if (classes := _exception_classes_outside_the_hierarchy(ast.parse(path.read_text())))
    }
    assert found == {}


def test_the_check_finds_a_class_outside_the_hierarchy():
    tree = ast.parse("class BadInput(ValueError):\n    pass\nclass Fine(GreenDeployError):\n    pass\n")
    assert _exception_classes_outside_the_hierarchy(tree) == ["BadInput(ValueError)"]


@pytest.mark.parametrize(
    "name",
    ["ConfigError", "ModelNotFoundError", "DatasetSourceError", "ArtifactError", "HubUnavailableError"],
)
def test_the_kinds_in_errors_derive_from_the_root(name):
    from green_deploy import errors

    assert issubclass(getattr(errors, name), errors.GreenDeployError)
