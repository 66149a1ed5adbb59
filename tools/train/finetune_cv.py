"""Fine-tune the Lite0 tail on generated scenes AND the real dev photos, judged by
leave-one-fruit-out: one fine-tuning per fold, never on a view of the held-out fruit.

    python finetune_cv.py --epochs 2 --real-share 0.5 [--l2sp 0.01] [--folds all|cv|final]

Session 5's `finetune.py` tuned the tail on generated crops only: the generated figure
rose (validation 0.91 -> 0.975) and real pears were lost (fruit 630's dents passed). Here
each fold's tail also sees the real views of the fruits it may see (`features.py`'s
augmented crops and painted copies), class-balanced, as `--real-share` of every epoch,
so that what it learns from the generator has to hold on real pears too. `--l2sp` pulls
the tail towards its ImageNet weights (L2-SP).

Inputs are the caches the other scripts write, so each fold runs only the tail:
`finetune.py --cache` (3,000 generated crops, seed 7300, and validation seed 9400 with
and without `visible_defects`) and `features.py --trunk-cache` (views of the dev photos,
painted copies, 1,000 generated scenes of seed 7100, visible_defects on).

For each fold it prints the held-out photos' p(normal) from the shipped head recipe
(`train_line_classifier.RECIPE`, fitted on that fold's fine-tuned features) and from the
fine-tuning layer itself; the final run (every fruit) prints validation normal-vs-defect
and writes the tail (`--out`) for `features.py --backbone` / `train_line_classifier.py`.
Never sees seed 9300 (eval_line.py's reported held-out set).
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from cv import figures, fit, normal_vs_defect, p_normal_all, training_set
from features import tail_feats
from finetune import build_cache, class_index
from lite0 import SPLIT, load_backbone, pooled_tail, tail_state
from line_gen import LINE_CLASSES
from train_line_classifier import RECIPE

START = SPLIT  # first trained block: stages 5-6, conv_head, bn2 (finetune.py's best setting)


def tune(gen_a, gen_y, real_a, real_y, a, seed):
    """A fresh ImageNet tail fine-tuned on generated crops plus real crops (drawn
    class-balanced, `a.real_share` of each epoch); returns (model, fc)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = load_backbone()
    for p in model.parameters():
        p.requires_grad_(False)
    trained = [model.blocks[b] for b in range(START, 7)] + [model.conv_head, model.bn2]
    params = [p for m in trained for p in m.parameters()]
    start_w = [p.detach().clone() for p in params]
    for p in params:
        p.requires_grad_(True)
    fc = torch.nn.Linear(2560, len(LINE_CLASSES))
    opt = torch.optim.AdamW([{"params": params, "lr": a.lr}, {"params": fc.parameters(), "lr": 1e-3}],
                            weight_decay=0.0 if a.l2sp else 1e-4)
    yr = class_index(real_y)
    pr = 1.0 / np.bincount(yr, minlength=len(LINE_CLASSES))[yr]
    pr /= pr.sum()
    n_real = int(round(len(gen_a) * a.real_share / (1 - a.real_share)))
    per_epoch = len(gen_a) + n_real
    steps = a.epochs * ((per_epoch + a.batch - 1) // a.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[a.lr, 1e-3], total_steps=steps, pct_start=0.1)
    gy = torch.from_numpy(class_index(gen_y)).long()
    ry = torch.from_numpy(yr).long()
    model.eval()  # batch norm keeps the ImageNet statistics
    for _ in range(a.epochs):
        items = np.concatenate([np.stack([np.zeros(len(gen_a), int), rng.permutation(len(gen_a))], 1),
                                np.stack([np.ones(n_real, int), rng.choice(len(real_a), n_real, p=pr)], 1)])
        items = items[rng.permutation(len(items))]
        for k in range(0, len(items), a.batch):
            b = items[k:k + a.batch]
            g, r = b[b[:, 0] == 0, 1], b[b[:, 0] == 1, 1]
            x = torch.from_numpy(np.concatenate([gen_a[np.sort(g)], real_a[r]]))
            y = torch.cat([gy[np.sort(g)], ry[r]])
            loss = F.cross_entropy(fc(F.dropout(pooled_tail(model, x, START), 0.2, training=True)), y)
            if a.l2sp:
                loss = loss + a.l2sp * sum(((p - w) ** 2).sum() for p, w in zip(params, start_w))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model, fc


def fc_p_normal(model, fc, acts):
    with torch.no_grad():
        return fc(torch.from_numpy(tail_feats(model, acts))).softmax(1)[:, 0].numpy()


def head_p_normal(model, T, exclude, tests):
    """The shipped head recipe on this tail's features, fitted without `exclude`."""
    Fd = {k: T[k] for k in ("labels", "real_i", "paint_i", "paint_y", "syn_y")}
    for k in ("real_c", "paint_c", "syn_c"):
        Fd[k] = tail_feats(model, T[f"act_{k}"])
    X, Y, W = training_set(Fd, exclude, RECIPE["mode"], RECIPE["feats"], RECIPE["use_paint"], RECIPE["use_syn"])
    head = fit(X, Y, RECIPE["C"], W, RECIPE["kind"])
    return [p_normal_all(head, tail_feats(model, t)) for t in tests]


def background_p_normal(model, T, held):
    """The shortcut check with this fold's tail: the same head recipe on frames with the
    pear blacked out (features.py's bg views), fitted without `held`."""
    Fd = {"labels": T["labels"], "real_i": T["real_i"], "bg_w": tail_feats(model, T["act_bg_w"])}
    X, Y, W = training_set(Fd, held, "w", RECIPE["feats"], False, False, real="bg")
    head = fit(X, Y, RECIPE["C"], W, RECIPE["kind"])
    return p_normal_all(head, tail_feats(model, T["act_bgtest_w"][held]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ft-cache", default="runs/ft_cache.npz", help="finetune.py's cache, made here if missing")
    ap.add_argument("--scenes", type=int, default=3000, help="generated crops in that cache")
    ap.add_argument("--val", type=int, default=400, help="validation crops in that cache")
    ap.add_argument("--trunk-cache", default="runs/trunk_v.npz")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--real-share", type=float, default=0.5, help="share of each epoch's crops drawn from real views")
    ap.add_argument("--l2sp", type=float, default=0.0)
    ap.add_argument("--folds", choices=("all", "cv", "final"), default="all")
    ap.add_argument("--out", default=None, help="write the final (every fruit) tail here")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    C = build_cache(a.ft_cache, a.scenes, a.val)
    if not os.path.exists(a.trunk_cache):
        raise SystemExit(f"{a.trunk_cache} missing: VISIBLE_DEFECTS=1 python features.py --synthetic 1000 --views 12 "
                         f"--painted 12 --val 400 --trunk-cache {a.trunk_cache} --out runs/feats_v.npz")
    T = dict(np.load(a.trunk_cache))
    gen_a, gen_y = C["train_a"], C["train_y"]
    labels, fruits = T["labels"], T["fruits"]
    real_all = np.concatenate([T["act_real_c"], T["act_paint_c"]])
    real_y_all = np.concatenate([labels[T["real_i"]], T["paint_y"]])
    real_src = np.concatenate([T["real_i"], T["paint_i"]])
    res = {"args": vars(a)}
    if a.folds in ("all", "cv"):
        pn_head, pn_fc, pn_bg = np.zeros(len(labels)), np.zeros(len(labels)), np.zeros(len(labels))
        for n, g in enumerate(sorted(set(fruits))):
            held = np.nonzero(fruits == g)[0]
            keep = ~np.isin(real_src, held)
            model, fc = tune(gen_a, gen_y, real_all[keep], real_y_all[keep], a, seed=n)
            test = T["act_test_c"][held]
            pn_fc[held] = fc_p_normal(model, fc, test)
            pn_head[held] = head_p_normal(model, T, held, [test])[0]
            pn_bg[held] = background_p_normal(model, T, held)
            print(f"fold {g}: head {np.round(pn_head[held], 3)} fc {np.round(pn_fc[held], 3)} "
                  f"labels {labels[held]}", flush=True)
        for name, pn in (("head", pn_head), ("fc", pn_fc), ("background_only", pn_bg)):
            f = figures(labels, pn, 0.5)
            print(f"LOFO {name}: nvd {f[0]:.2f} rec {f[1]:.2f} kept {f[2]:.2f} pn={np.round(pn, 2)}", flush=True)
            res[f"lofo_{name}"] = {"figures": list(f), "p_normal": pn.tolist()}
    if a.folds in ("all", "final"):
        model, fc = tune(gen_a, gen_y, real_all, real_y_all, a, seed=100)
        vals = (("val9400_visible", C["valv_a"], C["valv_y"]), ("val9400_plain", C["valp_a"], C["valp_y"]))
        ph = head_p_normal(model, T, [], [v[1] for v in vals])
        for (name, acts, y), p in zip(vals, ph):
            nvd_h = normal_vs_defect(y, p)
            nvd_f = normal_vs_defect(y, fc_p_normal(model, fc, acts))
            print(f"{name}: head nvd {nvd_h:.3f}, fc nvd {nvd_f:.3f}", flush=True)
            res[name] = {"head": nvd_h, "fc": nvd_f}
        if a.out:
            torch.save(tail_state(model), a.out)
            torch.save(fc.state_dict(), a.out + ".fc")
            print("wrote", a.out)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
