"""House rules that keep the architecture honest, checked on the source tree."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_tvm_is_imported_only_in_engine_codegen():
    offenders = [str(p.relative_to(ROOT)) for pkg in ("engine", "mapping")
                 for p in (ROOT / pkg).rglob("*.py")
                 if "codegen" not in p.relative_to(ROOT).parts
                 and _imports(p) & {"tvm", "tvm_ffi"}]
    assert offenders == []


def test_mapping_never_imports_engine():
    offenders = [str(p) for p in (ROOT / "mapping").rglob("*.py") if "engine" in _imports(p)]
    assert offenders == []


def test_kernels_and_bindings_do_not_use_torch():
    """No torch/ATen/c10 include and no Torch CMake package or library: the kernels must link
    into arm64 artifacts and the wheel must not depend on torch's ABI."""
    import re
    bad = re.compile(r"#\s*include\s*[<\"](torch|ATen|c10)/|find_package\s*\(\s*Torch|"
                     r"\b(c10|torch_cpu|torch_python)\b|TORCH_LIBRARY")
    files = [p for d in ("kernels", "python") for p in (ROOT / d).rglob("*")
             if p.suffix in (".cc", ".h", ".txt", ".cmake")]
    files.append(ROOT / "CMakeLists.txt")
    offenders = [str(p.relative_to(ROOT)) for p in files if bad.search(p.read_text())]
    assert len(files) > 10 and offenders == []
