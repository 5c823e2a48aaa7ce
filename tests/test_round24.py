"""Round 24: fixes from the review helpers and note57's left-alone items."""
from coreaug.errors import chain


def _raised(make):
    try:
        make()
    except BaseException as exc:  # noqa: B902 - the test's own chains
        return exc
    raise AssertionError("nothing raised")


def test_an_errors_chain_follows_causes_then_contexts_once_each_up_to_the_one_being_handled():
    def inner():
        raise OSError(28, "No space left on device")

    def middle():
        try:
            inner()
        except OSError as exc:
            raise RuntimeError("zip writer failed") from exc

    def outer():
        try:
            middle()
        except RuntimeError:
            raise ValueError("while saving")  # its __context__, no __cause__

    error = _raised(outer)
    assert [type(e) for e in chain(error)] == [ValueError, RuntimeError, OSError]
    assert [type(e) for e in chain(error, handled=error.__context__)] == [ValueError]

    def hidden():
        try:
            inner()
        except OSError:
            raise KeyError("x") from None

    hidden_error = _raised(hidden)
    assert [type(e) for e in chain(hidden_error)] == [KeyError, OSError]
    assert [type(e) for e in chain(hidden_error, suppressed=True)] == [KeyError]

    looped = ValueError("a")
    other = ValueError("b")
    looped.__context__, other.__context__ = other, looped
    assert list(chain(looped)) == [looped, other]
