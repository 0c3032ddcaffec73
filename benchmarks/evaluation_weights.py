"""Raw or EMA weights for `evaluate` / `val_loss`: the measurement behind the default.

    python benchmarks/evaluation_weights.py                 # two moons, GCM-CU, seeds 0 1
    python benchmarks/evaluation_weights.py --steps 1500 --seeds 0 1 2

Trains the toy recipe's model (MLP 128 x 3, RAdam 2e-3, EMA 0.999, batch 512)
and every `--every` steps records, on a fixed held-out set: the evaluation
loss with the raw weights and with the EMA weights (`evaluate_with_ema`),
the training loss of the last epoch, and the 1-step sliced W2 of raw and
EMA samples. Prints a table and writes JSON (`--output`). The question it
answers: does the EMA's evaluation loss track the EMA samples' quality
better than the raw one, and how far does each lag the training loss?
"""

import argparse
import json
import os
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--eval-samples", type=int, default=4096)
    parser.add_argument("--output", default="benchmarks/results/evaluation_weights.json")
    return parser.parse_args(argv)


def run(seed, args):
    import numpy as np
    import keras
    import keras_gcm
    from keras_gcm.metrics import sliced_wasserstein2

    keras.utils.set_random_seed(seed)
    network = keras_gcm.networks.MLP(hidden_units=128, num_blocks=3)
    model = keras_gcm.ConsistencyModel.from_preset("gcm_cu", network, ema_decay=0.999, seed=seed)
    model.compile(optimizer=keras_gcm.optimizers.RAdam(2e-3))
    train = keras_gcm.data.toy2d("two_moons", args.batch_size * args.every, seed=seed)
    held_out = keras_gcm.data.toy2d("two_moons", args.eval_samples, seed=10_000 + seed)
    reference = keras_gcm.data.toy2d("two_moons", args.eval_samples, seed=20_000 + seed)
    model.build((None, 2))
    ema = keras_gcm.ConsistencyModel.from_config({**model.get_config(), "evaluate_with_ema": True})
    ema.build((None, 2))
    ema.compile(optimizer=keras_gcm.optimizers.RAdam(2e-3))
    rows = []
    for step in range(args.every, args.steps + 1, args.every):
        history = model.fit(train, batch_size=args.batch_size, epochs=1, verbose=0).history
        ema.set_weights(model.get_weights())
        raw_loss = model.evaluate(held_out, batch_size=512, verbose=0)[0]
        ema_loss = ema.evaluate(held_out, batch_size=512, verbose=0)[0]
        w2 = {kind: float(sliced_wasserstein2(
            keras_gcm.samplers.one_step(model, args.eval_samples, seed=1, use_ema=kind == "ema"),
            reference, seed=0)) for kind in ("raw", "ema")}
        rows.append({"seed": seed, "step": step, "train_loss": history["loss"][-1],
                     "val_loss_raw": raw_loss, "val_loss_ema": ema_loss,
                     "sliced_w2_raw": w2["raw"], "sliced_w2_ema": w2["ema"]})
        print(" | ".join(f"{k} {v:.4g}" for k, v in rows[-1].items()), flush=True)
    return rows


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import numpy as np

    start = time.time()
    rows = [row for seed in args.seeds for row in run(seed, args)]
    keys = ("val_loss_raw", "val_loss_ema", "sliced_w2_raw", "sliced_w2_ema")
    summary = {}
    for kind in ("raw", "ema"):
        loss = np.array([r[f"val_loss_{kind}"] for r in rows])
        w2 = np.array([r[f"sliced_w2_{kind}"] for r in rows])
        ema_w2 = np.array([r["sliced_w2_ema"] for r in rows])
        train = np.array([r["train_loss"] for r in rows])
        summary[kind] = {
            # Spearman rank correlation with the EMA samples' sliced W2.
            "rank_corr_with_ema_w2": float(np.corrcoef(np.argsort(np.argsort(loss)),
                                                       np.argsort(np.argsort(ema_w2)))[0, 1]),
            "rank_corr_with_own_w2": float(np.corrcoef(np.argsort(np.argsort(loss)),
                                                       np.argsort(np.argsort(w2)))[0, 1]),
            "mean_ratio_to_train_loss": float(np.mean(loss / train)),
        }
    print("\n| weights | rank corr. with EMA 1-step W2 | with own W2 | val_loss / train loss |")
    print("|---|---|---|---|")
    for kind, s in summary.items():
        print(f"| {kind} | {s['rank_corr_with_ema_w2']:.3f} | {s['rank_corr_with_own_w2']:.3f} "
              f"| {s['mean_ratio_to_train_loss']:.3f} |")
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump({"args": vars(args), "rows": rows, "summary": summary,
                   "seconds": time.time() - start, "keys": keys}, f, indent=1)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
