"""Every command-line option of the scripts in experiments/ says what it does in --help: each
`add_argument(...)` call in experiments/*.py has a `help=` keyword (help=argparse.SUPPRESS, an
option hidden on purpose, counts as one)."""
import ast
import pathlib

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"


def add_argument_calls(source):
    """The `add_argument(...)` calls in Python `source` (any receiver: a parser, a group)."""
    return [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"]


def test_every_experiment_option_has_help():
    found, offenders = 0, []
    for path in sorted(EXPERIMENTS.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        for call in add_argument_calls(source):
            found += 1
            if not any(keyword.arg == "help" for keyword in call.keywords):
                offenders.append(f"experiments/{path.name}:{call.lineno}: {ast.get_source_segment(source, call)}")
    assert found, f"no add_argument calls found in {EXPERIMENTS}/*.py"
    assert not offenders, f"{len(offenders)} option(s) without help=:\n" + "\n".join(offenders)
