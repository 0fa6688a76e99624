"""schemas.lazyimport: packages imported inside ``lazily`` run their code on first use only."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent(
    """
    import sys, importlib.util
    sys.path.insert(0, sys.argv[1])
    from schemas.lazyimport import lazily

    with lazily("heavy"):
        import heavy.sub
        from heavy import sub as same
        import light
    print("after import", flush=True)
    print("lazy", isinstance(sys.modules["heavy.sub"], importlib.util._LazyModule), flush=True)
    print("value", same.VALUE, flush=True)  # first use: the module's code runs now
    print("light ran", light.RAN)
    with lazily("heavy"):
        import _json  # a compiled module is loaded as usual
    print("compiled", type(_json).__name__)
    """
)


def test_modules_are_executed_on_first_use_only_and_others_as_usual(tmp_path):
    (tmp_path / "heavy").mkdir()
    (tmp_path / "heavy" / "__init__.py").write_text("print('heavy ran', flush=True)\nRAN = True\n")
    (tmp_path / "heavy" / "sub.py").write_text("print('sub ran', flush=True)\nVALUE = 42\n")
    (tmp_path / "light.py").write_text("print('light ran now', flush=True)\nRAN = True\n")
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(tmp_path)], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    # the package itself runs when its submodule is imported (the import needs its __path__),
    # the submodule only when its attribute is read; a package not named imports as usual
    assert lines[:3] == ["heavy ran", "light ran now", "after import"]
    assert lines[3:] == ["lazy True", "sub ran", "value 42", "light ran True", "compiled module"]
