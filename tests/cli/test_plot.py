"""metrics.png: a title, axis labels, whole-number round ticks."""

from __future__ import annotations

from corolla.cli._plot import history_figure
from corolla.server import History


def _history() -> History:
    history = History()
    for number in range(4):
        history.record(number, "server", {"loss": 1.0 / (number + 1), "accuracy": number / 4})
        if number:
            history.record(number, "train", {"train-loss": 0.5, "num-examples": 10})
    return history


def test_the_figure_has_a_title_labels_and_integer_round_ticks() -> None:
    figure = history_figure(_history(), "run 7 (demo)")

    assert figure is not None
    assert figure._suptitle is not None and figure._suptitle.get_text() == "run 7 (demo)"
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert sorted(ax.get_ylabel() for ax in axes) == ["accuracy", "loss", "train-loss"]
    figure.canvas.draw()  # the tick locator places ticks at drawing time
    for ax in axes:
        assert ax.get_xlabel() == "round"
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)


def test_nothing_to_plot_gives_no_figure() -> None:
    assert history_figure(History(), "run 1") is None
