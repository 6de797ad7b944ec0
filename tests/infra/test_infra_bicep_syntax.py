"""Every Bicep file parses (tree-sitter-bicep), and the files fit together the way the compiler would check.

The Bicep CLI is not available here, so beyond syntax these tests re-do the cheap part of its checks:
module paths and ``load*Content`` files exist, module calls pass every required parameter and only declared
ones, and the per-environment parameter files set only parameters ``main.bicep`` declares, with allowed
values.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.infra import bicep_ast as b

PARAM_FILES = sorted((b.BICEP_DIR / "params").glob("*.parameters.json"))


def test_there_are_templates_to_check() -> None:
    names = {p.name for p in b.bicep_files()}
    assert "main.bicep" in names
    assert len(names) >= 10, names


@pytest.mark.parametrize("path", b.bicep_files(), ids=lambda p: p.name)
def test_bicep_file_has_no_syntax_errors(path: Path) -> None:
    errors = b.load(path).syntax_errors()
    assert errors == [], "syntax errors:\n" + "\n".join(errors)


def test_syntax_check_reports_file_and_line(tmp_path: Path) -> None:
    """The check itself must catch a broken template and point at the line."""
    broken = tmp_path / "broken.bicep"
    broken.write_text(
        "param a string\n\nresource r 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n"
        "  name: 'x'\n  properties: {\n    a: [1, 2\n  }\n}\n"
    )
    errors = b.BicepFile(broken).syntax_errors()
    assert errors, "a missing ']' must be reported"
    assert errors[0].startswith(f"{broken}:6:"), errors


def _module_path(decl: b.Declaration) -> Path:
    return (decl.file.path.parent / decl.target).resolve()


def test_every_module_reference_exists() -> None:
    for file in b.all_files():
        for module in file.modules():
            assert _module_path(module).is_file(), f"{module.where()}: no file {module.target}"


def test_every_loaded_file_exists() -> None:
    seen = 0
    for file in b.all_files():
        for function in ("loadJsonContent", "loadTextContent"):
            for args in b.call_arguments(file.root, function):
                relative = b.string_value(args[0])
                assert relative is not None, f"{file.rel}: {function} needs a literal path"
                target = (file.path.parent / relative).resolve()
                assert target.is_file(), f"{file.rel}: {function}('{relative}') does not exist"
                if target.suffix == ".json":
                    json.loads(target.read_text())
                seen += 1
    assert seen >= 10


@pytest.mark.parametrize(
    "decl",
    [m for f in b.all_files() for m in f.modules()],
    ids=lambda d: f"{Path(d.file.rel).name}:{d.symbol}",
)
def test_module_call_matches_module_parameters(decl: b.Declaration) -> None:
    module = b.load(_module_path(decl))
    declared = module.params()
    params_node = decl.get("params")
    passed = set(b.properties(params_node)) if params_node is not None else set()
    required = {name for name, p in declared.items() if p.default is None and not p.type.endswith("?")}
    assert passed - set(declared) == set(), f"{decl.where()}: unknown parameters"
    assert required - passed == set(), f"{decl.where()}: missing required parameters"
    assert b.get(decl.body, "name") is not None, f"{decl.where()}: modules need a deployment name"


def _parameter_values(path: Path) -> dict[str, object]:
    document = json.loads(path.read_text())
    assert document["$schema"].endswith("deploymentParameters.json#")
    return {name: entry["value"] for name, entry in document["parameters"].items()}


def test_one_parameter_file_per_environment() -> None:
    assert [p.name for p in PARAM_FILES] == [
        "dev.parameters.json",
        "prod.parameters.json",
        "test.parameters.json",
    ]


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_parameter_file_fits_main(path: Path) -> None:
    declared = b.load(b.MAIN).params()
    values = _parameter_values(path)
    assert set(values) - set(declared) == set(), "parameters main.bicep does not declare"
    required = {name for name, p in declared.items() if p.default is None}
    assert required - set(values) == set(), "required parameters missing"
    assert values["environmentName"] == path.name.split(".")[0]
    for name, value in values.items():
        allowed = declared[name].allowed()
        if allowed is not None:
            assert value in allowed, f"{name}={value!r} not in {allowed}"
        assert not declared[name].secure, f"{name} is secure: pass it from the pipeline, not a file"


def _references(file: b.BicepFile) -> set[str]:
    """Identifiers used as values (not the names being declared, not object keys)."""
    declaring = {
        "parameter_declaration",
        "variable_declaration",
        "output_declaration",
        "resource_declaration",
        "module_declaration",
        "object_property",
    }
    used = set()
    for node in b.walk(file.root):
        parent = node.parent
        if node.type != "identifier" or parent is None:
            continue
        if parent.type in declaring and parent.named_children[0].id == node.id:
            continue
        used.add(b.text(node))
    return used


@pytest.mark.parametrize("path", b.bicep_files(), ids=lambda p: p.name)
def test_no_unused_parameters_or_variables(path: Path) -> None:
    """The linter's no-unused-params / no-unused-vars (errors in bicepconfig.json), checked here too."""
    file = b.load(path)
    used = _references(file)
    unused = [name for name in [*file.params(), *file.variables()] if name not in used]
    assert unused == [], f"{file.rel}: unused {unused}"


#: Names a template may use without declaring them: functions, namespaces and decorators.
_BUILTINS = frozenset(
    [
        "resourceGroup",
        "subscription",
        "tenant",
        "environment",
        "deployment",
        "uniqueString",
        "take",
        "guid",
        "contains",
        "union",
        "concat",
        "map",
        "filter",
        "items",
        "join",
        "replace",
        "empty",
        "endsWith",
        "startsWith",
        "string",
        "int",
        "json",
        "length",
        "split",
        "toLower",
        "toUpper",
        "toObject",
        "subscriptionResourceId",
        "tenantResourceId",
        "resourceId",
        "loadJsonContent",
        "loadTextContent",
        "cidrSubnet",
        "newGuid",
        "last",
        "first",
        "min",
        "max",
        "reduce",
        "sort",
        "flatten",
        "range",
        "base64",
        "utcNow",
        "extensionResourceId",
        "indexOf",
        "substring",
        "trim",
        "format",
        "bool",
        "array",
        "object",
        "reference",
        "sys",
        "az",
        "allowed",
        "description",
        "minLength",
        "maxLength",
        "minValue",
        "maxValue",
        "secure",
        "metadata",
    ]
)


@pytest.mark.parametrize("path", b.bicep_files(), ids=lambda p: p.name)
def test_every_identifier_is_declared(path: Path) -> None:
    """A reference to a parameter, variable or symbol that does not exist parses fine; the build fails."""
    file = b.load(path)
    source = file.source.decode()
    declared = set(file.params()) | set(file.variables()) | set(file.outputs())
    declared |= {d.symbol for d in file.declarations()}
    declared |= set(re.findall(r"\[for \(?(\w+)", source)) | set(re.findall(r"\[for \(\w+, (\w+)\)", source))
    declared |= set(re.findall(r"(\w+) =>", source))
    unknown = set()
    for node in b.walk(file.root):
        parent = node.parent
        if node.type != "identifier" or parent is None or parent.type == "decorator":
            continue
        if parent.type == "member_expression" and parent.named_children[0].id != node.id:
            continue
        if (
            parent.type in ("object_property", "decorator_expression")
            and parent.named_children[0].id == node.id
        ):
            continue
        name = b.text(node)
        if name not in declared and name not in _BUILTINS:
            unknown.add(name)
    assert unknown == set(), f"{file.rel}: undeclared {sorted(unknown)}"
