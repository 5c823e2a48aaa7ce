"""The README's links lead somewhere: every relative link names a file or folder of the repository.

(`mkdocs build --strict`, run by `make test` and `make docs`, checks the links of docs/ itself.)
"""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# [text](target) and ![alt](target), target up to whitespace, ')' or '#'; code spans and blocks removed first
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s#]*)(#[^)\s]*)?\)")


def relative_links(markdown):
    """The relative link targets of a Markdown text, outside code blocks and code spans."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = [m.group(1) for m in LINK.finditer(text)]
    return [t for t in targets if t and not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def broken_links(markdown, folder):
    """The relative links of `markdown` (a file in `folder`) whose target does not exist."""
    return [t for t in relative_links(markdown) if not os.path.exists(os.path.join(folder, t))]


def test_relative_links_are_found_outside_code():
    text = ("See [a](docs/a.md), ![plot](x.png) and [b](docs/b.md#part); not [web](https://x.org/y), "
            "`[code](nope.md)`, or\n```\n[block](nope.md)\n```\n")
    assert relative_links(text) == ["docs/a.md", "x.png", "docs/b.md"]


def test_a_link_to_a_missing_file_is_reported(tmp_path):
    (tmp_path / "here.md").write_text("x")
    assert broken_links("[ok](here.md) [gone](moved/away.md)", str(tmp_path)) == ["moved/away.md"]


def test_every_relative_link_in_the_readme_exists():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert relative_links(readme), "the README links into the manual"
    assert broken_links(readme, ROOT) == []



def test_the_config_and_result_docstrings_name_every_field():
    """docs/api.md is generated from these docstrings: a field they leave out is undocumented."""
    import dataclasses

    from coreaug import TrainConfig, TrainResult

    for cls in (TrainConfig, TrainResult):
        doc = cls.__doc__
        missing = [f.name for f in dataclasses.fields(cls) if not re.search(rf"\b{f.name}\b", doc)]
        assert not missing, f"{cls.__name__}'s docstring does not describe {missing}"
