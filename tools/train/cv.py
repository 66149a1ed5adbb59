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


class MlpHead:
    """A small MLP over the standardised features (hidden 256, ReLU), class-balanced
    cross-entropy, weight decay 1/C scaled; full-batch Adam, fixed seed. Same interface
    as the sklearn head: `classes_`, `predict_proba`."""

    HIDDEN = 256

    def __init__(self, C, epochs=300, seed=0):
        self.C, self.epochs, self.seed = C, epochs, seed

    def fit(self, X, Y, sample_weight=None):
        import torch
        torch.manual_seed(self.seed)
        self.classes_ = np.unique(Y)
        yi = np.searchsorted(self.classes_, Y)
        counts = np.bincount(yi, minlength=len(self.classes_))
        w = len(yi) / (len(self.classes_) * counts[yi])
        if sample_weight is not None:
            w = w * sample_weight
        x = torch.from_numpy(X).float()
        t = torch.from_numpy(yi).long()
        wt = torch.from_numpy(w / w.mean()).float()
        self.net = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(X.shape[1], self.HIDDEN),
                                       torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                       torch.nn.Linear(self.HIDDEN, len(self.classes_)))
        opt = torch.optim.AdamW(self.net.parameters(), lr=1e-3, weight_decay=0.01 / self.C)
        for _ in range(self.epochs):
            opt.zero_grad()
            loss = (torch.nn.functional.cross_entropy(self.net(x), t, reduction="none") * wt).mean()
            loss.backward()
            opt.step()
        self.net.eval()
        return self

    def predict_proba(self, X):
        import torch
        with torch.no_grad():
            return self.net(torch.from_numpy(np.asarray(X)).float()).softmax(1).numpy()


def fit(X, Y, C, w=None, kind="linear"):
    mu, sd = X.mean(0), X.std(0) + 1e-6
    if kind == "mlp":
        clf = MlpHead(C).fit((X - mu) / sd, Y, sample_weight=w)
    else:
        clf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced").fit((X - mu) / sd, Y, sample_weight=w)
    return clf, mu, sd


def p_normal_all(model, X):
    clf, mu, sd = model
    p = clf.predict_proba((X - mu) / sd)
    return p[:, list(clf.classes_).index(0)]


def p_normal(model, x):
    return p_normal_all(model, x[None])[0]


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


def lofo(F, mode, feats, use_paint, use_syn, C, syn_weight=1.0, real="real", test="test", kind="linear"):
    """p(normal) of each dev photo from the fold that held its fruit out."""
    sl = slice(0, 1280) if feats == "avg" else slice(None)
    y, fruits = F["labels"], F["fruits"]
    pn = np.zeros(len(y))
    for g in sorted(set(fruits)):
        held = np.nonzero(fruits == g)[0]
        X, Y, W = training_set(F, held, mode, feats, use_paint, use_syn, syn_weight, real)
        model = fit(X, Y, C, W, kind)
        for i in held:
            pn[i] = p_normal(model, F[f"{test}_{mode}"][i][sl])
    return pn


def normal_vs_defect(y, pn, th=0.5):
    """Share of images whose normal/defect answer at threshold `th` is right."""
    return float(np.mean((pn < th) == (y != 0)))


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
