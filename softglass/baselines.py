"""What the model must beat, on the same split: lambda_1 alone, least squares on an atom's 5
features, and gradient-boosted trees on its features plus their averages over its neighbours."""
import numpy as np
import torch

from .graphs import neighbour_features


def fit_gbt(x, y, seed):
    """Gradient-boosted trees on neighbour_features rows x, fitted to the labels y (the baseline
    of baseline_scores; validate_rearrangements.py scores it as an indicator too)."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    gbt = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=seed)
    return gbt.fit(x, y)


def baseline_scores(data, train_b, test_b, seed):
    """Test R of simple predictors on the same split, one copy per base (features and labels
    are rotation invariant, so the other copies repeat it): lambda_1 alone (signed R: a soft cage
    means a soft atom, so expect it negative), least squares on the 5 features, and gradient-
    boosted trees (random_state seed) on the 5 features plus their neighbour averages. The model
    must beat these."""
    tr = [data[b][0] for b in train_b]
    te = [data[b][0] for b in test_b]
    y_tr = torch.cat([g.y for g in tr]).numpy()
    y_te = torch.cat([g.y for g in te]).numpy()
    x_tr = np.concatenate([neighbour_features(g) for g in tr])
    x_te = np.concatenate([neighbour_features(g) for g in te])
    r = lambda pred: float(np.corrcoef(pred, y_te)[0, 1])  # noqa: E731
    ones = lambda x: np.concatenate([x[:, :5], np.ones((len(x), 1))], axis=1)  # noqa: E731
    coef, *_ = np.linalg.lstsq(ones(x_tr), y_tr, rcond=None)
    gbt = fit_gbt(x_tr, y_tr, seed)
    return dict(lambda1_R=r(x_te[:, 2]), least_squares_R=r(ones(x_te) @ coef),
                gbt_neighbours_R=r(gbt.predict(x_te)))
