import math

import numpy as np

from tasador.core.metrics import readable, regression_metrics, rmsle


def test_perfect_prediction_scores_zero_error():
    y = np.array([100_000.0, 250_000.0, 1_000_000.0])
    m = regression_metrics(y, y)
    assert m["rmsle"] == 0 and m["mae"] == 0 and m["mape"] == 0 and m["r2"] == 1


def test_rmsle_of_doubling_is_log2_and_negative_predictions_clip():
    y = np.full(4, 1e6)
    assert math.isclose(rmsle(y, 2 * y), math.log(2), rel_tol=1e-5)
    assert rmsle([0.0], [-5.0]) == 0.0


def test_mape_and_mae_on_price_scale():
    m = regression_metrics([100.0, 200.0], [110.0, 180.0])
    assert math.isclose(m["mae"], 15.0)
    assert math.isclose(m["mape"], 0.1)


def test_mdape_is_the_typical_row_not_the_mean():
    m = regression_metrics([100.0, 200.0, 400.0], [150.0, 190.0, 400.0])
    assert math.isclose(m["mdape"], 0.05)  # one wild row moves the mean, not the median
    assert math.isclose(m["mape"], 0.55 / 3)


def test_figures_read_as_dollars_percentages_and_plain_numbers():
    assert readable("mae", 182407.5049) == "$182,408"
    assert readable("mape", 0.3577) == "35.8%" and readable("mdape", 0.25) == "25.0%"
    assert readable("rmsle", 0.41234) == "0.412" and readable("r2", 0.7) == "0.700"
    assert readable("rmsle", float("nan")) == "not finite" and readable("mae", None) == "-"
