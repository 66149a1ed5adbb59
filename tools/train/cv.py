"""Leave-one-fruit-out cross-validation of the classifier recipe on the dev photos.

    python cv.py runs/feats.npz

Each fold holds out every photo of one fruit (same number = same pear), trains the
linear head on the other photos' augmented views, on painted copies of the other
photos only, and on generated scenes, then scores the held-out photos' plain views.
"""
from __future__ import annotations

import itertools
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression


def fit(X, Y, C, w=None):
    mu, sd = X.mean(0), X.std(0) + 1e-6
    clf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced").fit((X - mu) / sd, Y, sample_weight=w)
    return clf, mu, sd


def p_normal(model, x):
    clf, mu, sd = model
    p = clf.predict_proba(((x - mu) / sd)[None])[0]
    return p[list(clf.classes_).index(0)]


def training_set(F, exclude, mode, feats, use_paint, use_syn, syn_weight=1.0, real="real"):
    """Features, labels, weights from every dev photo not in `exclude` (augmented views,
    painted copies) and the generated scenes. `real="bg"` uses background-only views."""
    sl = slice(0, 1280) if feats == "avg" else slice(None)
    y = F["labels"]
    keep_r = ~np.isin(F["real_i"], exclude)
    Xs = [F[f"{real}_{mode}"][keep_r][:, sl]]
    Ys = [y[F["real_i"][keep_r]]]
    Ws = [np.ones(keep_r.sum())]
    if use_paint:
        keep_p = ~np.isin(F["paint_i"], exclude)
        Xs.append(F[f"paint_{mode}"][keep_p][:, sl]); Ys.append(F["paint_y"][keep_p]); Ws.append(np.ones(keep_p.sum()))
    if use_syn:
        Xs.append(F[f"syn_{mode}"][:, sl]); Ys.append(F["syn_y"]); Ws.append(np.full(len(F["syn_y"]), syn_weight))
    return np.concatenate(Xs), np.concatenate(Ys), np.concatenate(Ws)


def lofo(F, mode, feats, use_paint, use_syn, C, syn_weight=1.0, real="real", test="test"):
    """p(normal) of each dev photo from the fold that held its fruit out."""
    sl = slice(0, 1280) if feats == "avg" else slice(None)
    y, fruits = F["labels"], F["fruits"]
    pn = np.zeros(len(y))
    for g in sorted(set(fruits)):
        held = np.nonzero(fruits == g)[0]
        X, Y, W = training_set(F, held, mode, feats, use_paint, use_syn, syn_weight, real)
        model = fit(X, Y, C, W)
        for i in held:
            pn[i] = p_normal(model, F[f"{test}_{mode}"][i][sl])
    return pn


def figures(y, pn, th):
    d = y != 0
    nd = pn < th
    return np.mean(nd == d), np.mean(nd[d]), np.mean(~nd[~d])


if __name__ == "__main__":
    F = dict(np.load(sys.argv[1]))
    y = F["labels"]
    for mode, feats, paint, syn, C in itertools.product(["w", "c"], ["avg", "avgmax"], [0, 1], [0, 1], [0.05, 0.5]):
        pn = lofo(F, mode, feats, paint, syn, C)
        a, r, k = figures(y, pn, 0.5)
        print(f"{mode} {feats:6} paint{paint} syn{syn} C{C}: nvd {a:.2f} rec {r:.2f} kept {k:.2f} pn={np.round(pn, 2)}", flush=True)
