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


def test_the_training_pages_defaults_table_has_every_dataset_and_folders_as_the_code_has_them():
    from coreaug.training.config import DATASET_DEFAULTS, FALLBACK_DEFAULTS

    with open(os.path.join(ROOT, "docs", "training.md")) as f:
        text = f.read()
    rows = re.findall(r"^\| ([^|]+) \| (\S+) \| (\d+) \| (\d+) \| ([\d.e-]+) \| ([\d.e-]+) \| (yes|no) \|$", text, re.M)
    documented = {name.strip(): row for names, *row in rows for name in names.split(",")}
    expected = {**DATASET_DEFAULTS, "a folder of images": FALLBACK_DEFAULTS}
    assert set(documented) == set(expected)
    for name, (model, epochs, batch, lr, decay, flip) in documented.items():
        want = expected[name]
        assert (model, int(epochs), int(batch), float(lr), float(decay), flip == "yes") == \
            (want["model"], want["epochs"], want["batch_size"], want["lr"], want["weight_decay"], want["flip"]), name


def test_the_training_page_counts_subset_modes_epoch_as_the_plan_does():
    from coreaug.training.plan import plan_length

    with open(os.path.join(ROOT, "docs", "training.md")) as f:
        subset = next(line for line in f.read().split("\n- ") if line.startswith("`--mode subset`"))
    assert "(1 + K)·round(fN)" in " ".join(subset.split()) and "(K = 1)" not in subset
    assert plan_length(100, "random", "subset", 30, 3) == (1 + 3) * 30
