"""The import graph: no cycles, and no module importing a layer above its own or a sibling unit
(docs/architecture.md). Layers, lowest first; a unit is a top-level module or package of vidiff/."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "vidiff"
LAYERS = [
    {"errors", "world"},                             # the one exception type; the synthetic world's words
    {"config", "devices"},                           # what a run is; where tensors live and in what precision
    {"diffusion", "models", "data"},                 # math, networks, clips: none imports another
    {"registry", "checkpoint", "distributed"},       # config names from registries, run folders and weights, process groups
    {"pipeline"},                                    # VideoPipeline and the denoising loop
    {"training", "evaluation"},                      # the loop and its tasks; metrics and reports
    {"webui"},                                       # vidiff serve: a gradio app over pipeline and evaluation
    {"cli", "__main__", "__init__"},                 # thin faces over the Python API
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """vidiff modules that `path` imports, anywhere in the file (lazy imports count too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                targets = [target] + [f"{target}.{a.name}" for a in node.names]
            else:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found |= {t for t in targets if t and t.startswith("vidiff")}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("vidiff")}
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {t for t in imports(p) if t in files and t != m} for m, p in files.items()}


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_unit_has_a_layer():
    assert {unit(m) for m in graph()} <= set(LAYER)


def test_no_module_imports_a_higher_layer_or_a_sibling_unit():
    wrong = sorted(f"{a} -> {b}" for a, targets in graph().items() for b in targets
                   if unit(a) != unit(b) and LAYER[unit(b)] >= LAYER[unit(a)]
                   and not (unit(a) in ("cli", "__main__") and unit(b) in ("cli", "__init__")))
    assert wrong == []


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m, path):
        state[m] = 1
        for t in g[m]:
            if state.get(t) == 1:
                cycles.append(path[path.index(t):] + [t])
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2
    for m in g:
        if m not in state:
            visit(m, [m])
    assert cycles == []


# one pipeline, every model (shared/DESIGN.md): above models/, no code knows which family it runs
FAMILY_WORDS = ("wan", "cogvideo", "hunyuan", "ltx", "mochi")


def _strings_outside_docs_and_help(tree: ast.AST) -> list[str]:
    """String constants that are neither a docstring nor (part of) a `help=` text."""
    skip = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            skip.add(id(body[0].value))
        if isinstance(node, ast.keyword) and node.arg == "help":
            skip |= {id(n) for n in ast.walk(node.value)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in skip]


def test_no_code_above_models_names_a_family_or_tests_a_model_class():
    import re
    classes = {n.name for sub in ("models", "pipeline") for p in (PACKAGE / sub).rglob("*.py")
               for n in ast.walk(ast.parse(p.read_text()))      # networks, bundles and pipelines, not option groups
               if isinstance(n, ast.ClassDef) and (sub == "models" or n.name.endswith("Pipeline"))}
    wrong, modules = [], set(graph())
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if LAYER[unit(name)] <= LAYER["models"]:
            continue
        tree = ast.parse(path.read_text())
        wrong += [f"{name} imports {t}" for t in imports(path) & modules if t.startswith("vidiff.models.external.")]
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("isinstance", "issubclass", "type"):
                named = {getattr(n, "id", getattr(n, "attr", None)) for n in ast.walk(node)}
                wrong += [f"{name} tests the class {c}" for c in sorted(named & classes)]
        wrong += [f"{name} names the family in {s!r}" for s in _strings_outside_docs_and_help(tree)
                  if re.search(rf"\b({'|'.join(FAMILY_WORDS)})\b", s, re.IGNORECASE)]
    assert wrong == []
