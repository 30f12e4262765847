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


def _clusters(n_per=60, dim=32, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, dim, generator=g) * 4
    x = torch.cat([c + torch.randn(n_per, dim, generator=g) for c in centres])
    return x, torch.arange(3).repeat_interleave(n_per)


def _nearest_neighbour_agreement(xy, labels):
    import numpy as np

    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return float((labels.numpy()[d.argmin(1)] == labels.numpy()).mean())


def test_umap_projection_keeps_clusters_apart():
    import numpy as np

    from sslkit.viz import project_2d

    x, labels = _clusters()
    xy = project_2d(x, "umap")
    assert xy.shape == (len(x), 2) and np.isfinite(xy).all()
    assert _nearest_neighbour_agreement(xy, labels) > 0.95     # each point lands beside its own cluster
    assert np.allclose(project_2d(x, "umap"), xy)              # seeded: the same picture every run


def test_projection_of_an_unknown_kind_is_refused():
    import pytest

    from sslkit.viz import project_2d

    x, _ = _clusters(n_per=5)
    assert project_2d(x, "pca").shape == (15, 2)
    with pytest.raises(ValueError, match="unknown projection 'mds'"):
        project_2d(x, "mds")
