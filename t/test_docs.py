"""docs/ARCHITECTURE.md against the code: every module file, every nginx
directive and $vmx_ variable of the module, and every environment variable
the control plane reads is documented there."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "ARCHITECTURE.md").read_text()


def module_source():
    return {p.name: p.read_text() for p in (ROOT / "ngx_vmx_module").glob("*.c")}


def block(text, start):
    """The text of the array that begins at start, up to its closing '};'."""
    i = text.index(start)
    return text[i:text.index("\n};", i)]


def test_every_module_file_is_named():
    missing = [name for name in module_source() if f"`{name}`" not in DOC]
    assert not missing, missing


def test_every_directive_is_documented():
    src = module_source()["ngx_http_vmx_module.c"]
    directives = re.findall(r'ngx_string\("(vmx_\w+)"\)',
                            block(src, "ngx_http_vmx_commands[] = {"))
    assert len(directives) > 20
    table = DOC[DOC.index("## Data-plane nginx directives"):]
    missing = [d for d in directives if not re.search(rf"`{d}[` ]", table)]
    assert not missing, missing


def test_every_variable_is_documented():
    src = module_source()["ngx_http_vmx_module.c"]
    variables = re.findall(r'ngx_string\("(vmx_\w+)"\)', block(src, "ngx_http_vmx_vars[] = {"))
    assert len(variables) > 10
    table = DOC[DOC.index("## Data-plane variables"):]
    missing = [v for v in variables if f"`${v}`" not in table]
    assert not missing, missing


def test_every_environment_variable_is_documented():
    names = set()
    for path in (ROOT / "control-plane").glob("*.c"):
        names |= set(re.findall(r'"((?:VMX|AWS)_[A-Z0-9_]+)"', path.read_text()))
    assert {"VMX_DATABASE_URL", "VMX_LISTEN", "VMX_OIDC_ISSUER"} <= names
    missing = sorted(n for n in names if f"`{n}`" not in DOC)
    assert not missing, missing
