"""Import a command-line tool of ``tools/`` (not a package) as a module, to call its functions in tests."""
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).resolve().parents[1] / 'tools'


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` executed as the module ``tools_<name>`` (registered in ``sys.modules`` first, as
    importlib's recipe does, so that dataclasses in a tool resolve their module)."""
    spec = importlib.util.spec_from_file_location(f'tools_{name}', TOOLS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
