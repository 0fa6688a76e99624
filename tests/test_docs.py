"""The README's column reference is the one generated from the schemas."""

from pathlib import Path

from schemas.docs import block

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_columns_match_schemas():
    assert block() in README.read_text(encoding="utf-8"), "run: python -m schemas.docs --write README.md"


def test_readme_opens_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in first_block] == ["make demo", "make test"]
