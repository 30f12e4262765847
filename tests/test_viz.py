from sslkit.viz import LivePlot


class FakeHandle:
    def __init__(self, log):
        self.log = log

    def update(self, fig):
        self.log.append(len(fig.axes[0].lines[0].get_xdata()))


def test_live_plot_redraws_at_most_every_interval_and_draws_the_end():
    drawn = []
    plot = LivePlot(keys=("loss",), min_interval=60.0)

    def display(fig, display_id):
        drawn.append(len(fig.axes[0].lines[0].get_xdata()))
        return FakeHandle(drawn)

    plot._display = display                                  # as inside a notebook
    for step in range(1, 11):
        plot({"step": step, "loss": 1.0 / step})
    assert drawn == [1]                                      # the first row, then nothing within the interval
    plot.close()
    assert drawn == [1, 10]                                  # the end: every row
    plot.close()
    assert drawn == [1, 10]                                  # nothing new, no redraw


def test_training_closes_its_callbacks(tmp_path):
    from sslkit.train import RunSpec, pretrain

    events = []

    class Recorder:
        def __call__(self, row):
            events.append("row")

        def close(self):
            events.append("close")

    pretrain(RunSpec("rotation", "digits", train={"steps": 4, "batch_size": 32, "log_every": 2}), tmp_path / "run",
             callbacks=[Recorder()], progress_bar=False)
    assert events == ["row", "row", "close"]
