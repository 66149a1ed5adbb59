"""Choose the classifier head's setting: for each head (linear logistic regression, or a
small MLP) and its regularisation, the leave-one-fruit-out figures on the dev photos
(cv.py) and normal-vs-defect on generated validation scenes (features.py --val, seed
SEED_VAL, never the seed eval_line.py reports, never trained on).

    VISIBLE_DEFECTS=1 python features.py --out runs/feats3.npz --synthetic 3000 --val 400
    python sweep_head.py runs/feats3.npz
    python sweep_head.py runs/feats_ft.npz --recipe [0.3 0.1]   # only the shipped head (RECIPE)
                                                              # [and with these generated weights]
    python sweep_head.py runs/feats3.npz --generated-only       # the linear head on generated scenes
                                                              # alone: what the features allow there
"""
from __future__ import annotations

import sys

import numpy as np

from cv import figures, fit, lofo, normal_vs_defect, p_normal_all, training_set


def val_nvd(F, head, th=0.5):
    X, Y, W = training_set(F, [], "c", "avgmax", True, True, head.get("syn_weight", 1.0))
    model = fit(X, Y, head["C"], W, kind=head.get("kind", "linear"))
    pn = p_normal_all(model, F["val_c"])
    return normal_vs_defect(F["val_y"], pn, th)


HEADS = [dict(kind="linear", C=C) for C in (0.05, 0.2, 1.0)] + \
        [dict(kind="linear", C=0.05, syn_weight=w) for w in (0.3, 0.1)] + \
        [dict(kind="mlp", C=C) for C in (0.05, 0.2, 1.0)]

def generated_only(F, C):
    """Validation normal-vs-defect of a linear head fitted on the generated scenes only."""
    model = fit(F["syn_c"], F["syn_y"], C)
    pn = p_normal_all(model, F["val_c"])
    return normal_vs_defect(F["val_y"], pn)


if __name__ == "__main__":
    F = dict(np.load(sys.argv[1]))
    y = F["labels"]
    if "--generated-only" in sys.argv[2:]:
        for C in (0.05, 0.5):
            print(f"linear C {C} on {len(F['syn_y'])} generated scenes only: val nvd {generated_only(F, C):.3f}")
        sys.exit(0)
    if "--recipe" in sys.argv[2:]:
        from train_line_classifier import RECIPE
        HEADS = [dict(kind=RECIPE["kind"], C=RECIPE["C"])]
        HEADS += [dict(kind=RECIPE["kind"], C=RECIPE["C"], syn_weight=float(w)) for w in sys.argv[3:]]
    for head in HEADS:
        pn = lofo(F, "c", "avgmax", True, True, head["C"], syn_weight=head.get("syn_weight", 1.0), kind=head["kind"])
        a, r, k = figures(y, pn, 0.5)
        print(f"{head}: lofo nvd {a:.2f} rec {r:.2f} kept {k:.2f} | val nvd {val_nvd(F, head):.3f} | "
              f"pn={np.round(pn, 2)}", flush=True)
    if "--recipe" in sys.argv[2:]:  # the shortcut check: the same head on background-only frames
        pbg = lofo(F, "w", "avgmax", False, False, HEADS[0]["C"], real="bg", test="bgtest")
        print("background only (pear blacked out): lofo nvd {:.2f} rec {:.2f} kept {:.2f}".format(*figures(y, pbg, 0.5)))
