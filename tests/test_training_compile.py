"""`--compile`: graphs are built in the first epoch and reused by every later one."""
import coreaug


def test_compile_builds_graphs_in_the_first_epoch_only():
    result = coreaug.train(coreaug.TrainConfig(dataset="synthetic", train_limit=96, test_limit=40, batch_size=32,
                                               epochs=3, quiet=True, compile=True, strategy="coreset"))
    compiled = [m["graphs_compiled"] for m in result.history]
    # Training steps (a full and a last, smaller batch), the estimate and evaluation passes.
    assert compiled[0] >= 1 and compiled[1:] == [0, 0], compiled
    assert result.final_test_accuracy > 0.1  # chance; the compiled model trains


def test_graph_counts_are_logged_only_with_compile():
    result = coreaug.train(coreaug.TrainConfig(dataset="synthetic", train_limit=64, test_limit=32, batch_size=32,
                                               epochs=1, quiet=True))
    assert "graphs_compiled" not in result.history[0]
