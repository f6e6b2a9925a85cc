import math

from PIL import Image

from hcmrm.rates_plot import DailyRate, Estimate, plot_rates, version_changes, write_html

ROWS = [
    DailyRate("2024-09-10", "1", pairs=100, irrelevant_pairs=25, impressions=1000, irrelevant_impressions=100,
              expected_irrelevant_pairs=31.5),
    DailyRate("2024-09-11", "1", pairs=50, irrelevant_pairs=10, impressions=500, irrelevant_impressions=250,
              expected_irrelevant_pairs=12.5),
    DailyRate("2024-09-11", "2", pairs=50, irrelevant_pairs=5, audited_pairs=10, audited=Estimate(0.3, 0.1, 0.6),
              ppi=Estimate(0.25, 0.15, 0.35)),
]
INDUSTRIES = [DailyRate("2024-09-11", "2", 30, 3, industry="pets", audited_pairs=4, ppi=Estimate(0.2, 0.0, 0.5)),
              DailyRate("2024-09-11", "2", 20, 2, industry="games")]


def test_rates_are_irrelevant_over_pairs_and_impressions():
    assert ROWS[0].rate == 0.25 and ROWS[0].weighted_rate == 0.1
    assert ROWS[2].weighted_rate is None  # no impressions in the input: no weighted rate
    assert ROWS[0].expected_rate == 0.315 and ROWS[2].expected_rate is None  # mean P(Bad or Less), where known
    assert math.isnan(DailyRate("2024-09-12", "1", 0, 0).rate)


def test_plot_writes_a_png_and_the_page_shows_it_with_the_numbers(tmp_path):
    png = plot_rates(ROWS, tmp_path / "rates.png")
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 300
    page = write_html(ROWS, png, tmp_path / "rates.html", industries=INDUSTRIES).read_text()
    assert '<img src="rates.png"' in page
    assert ("<td>2024-09-11</td><td>v2</td><td>50</td><td>5</td><td>0.1000</td><td></td><td></td><td>10</td>"
            "<td>0.3000 [0.1000, 0.6000]</td><td>0.2500 [0.1500, 0.3500]</td>") in page
    assert ("<td>2024-09-10</td><td>v1</td><td>100</td><td>25</td><td>0.2500</td><td>0.3150</td><td>0.1000</td>"
            "<td>0</td><td></td><td></td>") in page  # not audited: no intervals
    assert "<h2>Per industry on 2024-09-11</h2>" in page
    assert ("<td>games</td><td>v2</td><td>20</td><td>2</td><td>0.1000</td><td></td><td>0</td><td></td><td></td></tr>"
            "\n<tr><td>pets</td><td>v2</td><td>30</td><td>3</td><td>0.1000</td><td></td><td>4</td><td></td>"
            "<td>0.2000 [0.0000, 0.5000]</td>") in page
    assert "<td>0.5000</td>" in page  # v1 on 2024-09-11, impression-weighted
    assert "Irrelevant = predicted label Bad or Less (label &le; 1)." in page  # hcmrm.labels' threshold


def test_the_plot_marks_each_day_the_model_version_changes():
    assert version_changes(ROWS) == [("2024-09-11", ["1", "2"])]
    later = [*ROWS, DailyRate("2024-09-13", "2", 10, 1), DailyRate("2024-09-14", "2", 10, 1)]
    assert version_changes(later) == [("2024-09-11", ["1", "2"]), ("2024-09-13", ["2"])]
    assert version_changes(ROWS[:1]) == []


def test_an_empty_report_still_draws(tmp_path):
    assert plot_rates([], tmp_path / "empty.png").stat().st_size > 0


def test_the_date_axis_labels_each_day_once():
    import datetime

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hcmrm.rates_plot import set_day_axis

    for days in ([datetime.date(2024, 9, 10), datetime.date(2024, 9, 11)],
                 [datetime.date(2024, 8, 1) + datetime.timedelta(days=i) for i in range(60)]):
        fig, ax = plt.subplots()
        ax.plot(days, range(len(days)))
        set_day_axis(ax, days)
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        plt.close(fig)
        assert len(labels) == len(set(labels)) and 2 <= len(labels) <= 11
        assert labels[0] >= days[0].isoformat() and labels[-1] <= days[-1].isoformat()
        low, high = (matplotlib.dates.num2date(x).date() for x in ax.get_xlim())
        assert low < days[0] and high == days[-1], "half a day of margin on each side"
