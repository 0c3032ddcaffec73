"""Guidance at small scale: class-conditional digits through a tiny DiT (Table 6b's machinery).

The latent path of `recipes/imagenet256_latent.py` (the `imagenet256_vu_dit_b4`
preset: VU with the s = t mixture, label dropout 0.1; a DiT) on scikit-learn's
8x8 digits, the pixels standing in for latents. For every seed it trains

* `none`: label dropout only (model guidance off, omega = 1), sampled with
  guidance scale 1 (no guidance) and with sampling-time CFG (`--cfg-scales`);
* `model`: MeanFlow's model guidance (omega = `--omega`, training-time CFG),
  sampled with scale 1;

and reports the 1-step Frechet digits distance (FDD, against the 300
held-out digits) and the class accuracy of the digits classifier
(`keras_gcm.metrics.digits_classifier`) on class-balanced 1-step samples.

    python benchmarks/guidance_digits.py --seeds 0 1              # the numbers in the docs
    python benchmarks/guidance_digits.py --steps 100 --seeds 0    # a quick check
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "recipes"))
import _common  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--ema-decay", type=float, default=0.998)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--omega", type=float, default=2.0,
                        help="model-guidance scale of the `model` runs")
    parser.add_argument("--cfg-scales", type=float, nargs="*", default=[3.0],
                        help="sampling-time guidance scales of the `none` runs")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--output", default="benchmarks/results/guidance_digits.json")
    _common.add_backend_argument(parser)
    return parser.parse_args(argv)


def build_model(seed, omega, hidden_size=64, depth=2, learning_rate=2e-3, ema_decay=0.998,
                label_dropout=0.1):
    """The tiny class-conditional DiT consistency model on 8x8x1 digits."""
    import keras

    import keras_gcm

    network = keras_gcm.networks.DiT(
        img_resolution=8, in_channels=1, patch_size=2, hidden_size=hidden_size, depth=depth,
        num_heads=4, label_dim=10, time_inputs=2, seed=seed)
    model = keras_gcm.ConsistencyModel.from_preset(
        "imagenet256_vu_dit_b4", network, label_dropout=label_dropout,
        model_guidance=omega, ema_decay=ema_decay, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, beta_2=0.95))
    model.build((None, 8, 8, 1))
    return model


def train(model, steps, batch_size, seed):
    from keras_gcm.data.step_indexed_batches import StepIndexedBatches
    from keras_gcm.data import digits

    x, y = digits("train", labels=True)
    data = StepIndexedBatches(x, batch_size, seed=seed, labels=y).as_dataset()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return model


def evaluate(model, num_samples, seed, guidance_scale=1.0):
    """`{"fdd", "accuracy"}` of class-balanced 1-step samples."""
    import numpy as np

    from keras_gcm import samplers
    from keras_gcm.metrics import digits_classifier
    from keras_gcm.metrics import frechet_digits_distance

    labels = np.arange(num_samples) % 10
    images = samplers.one_step(model, num_samples, seed=seed, class_labels=labels,
                               guidance_scale=guidance_scale)
    return {"fdd": float(frechet_digits_distance(images)),
            "accuracy": float(digits_classifier().accuracy(np.clip(images, -1, 1), labels))}


def main(argv=None):
    import numpy as np

    args = parse_args(argv)
    backend = _common.select_backend(args.backend)
    import keras

    rows = []
    for seed in args.seeds:
        for kind, omega in (("none", 1.0), ("model", args.omega)):
            keras.utils.set_random_seed(seed)
            model = build_model(seed, omega, args.hidden_size, args.depth, args.learning_rate,
                                args.ema_decay)
            start = time.time()
            train(model, args.steps, args.batch_size, seed)
            seconds = time.time() - start
            scales = [1.0] + (list(args.cfg_scales) if kind == "none" else [])
            for scale in scales:
                result = evaluate(model, args.samples, seed + 1000, scale)
                rows.append({"seed": seed, "training": kind, "omega": omega,
                             "guidance_scale": scale, "train_seconds": round(seconds, 1),
                             **result})
                print(f"seed {seed} training={kind} omega={omega:g} scale={scale:g}: "
                      f"FDD {result['fdd']:.3f}, accuracy {result['accuracy']:.3f}")

    summary = {}
    for row in rows:
        key = f"{row['training']} (omega {row['omega']:g}), scale {row['guidance_scale']:g}"
        summary.setdefault(key, []).append(row)
    print(f"\n1-step samples, {len(args.seeds)} seeds, {args.steps} steps, backend {backend}")
    print("| training | sampling scale | FDD (mean ± std) | class accuracy (mean ± std) |")
    print("|---|---|---|---|")
    table = []
    for key, group in summary.items():
        fdd = np.array([r["fdd"] for r in group])
        acc = np.array([r["accuracy"] for r in group])
        entry = {"config": key, "fdd_mean": float(fdd.mean()), "fdd_std": float(fdd.std()),
                 "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()),
                 "seeds": [r["seed"] for r in group]}
        table.append(entry)
        training, scale = key.split(", scale ")
        print(f"| {training} | {scale} | {fdd.mean():.2f} ± {fdd.std():.2f} | "
              f"{acc.mean():.3f} ± {acc.std():.3f} |")
    payload = {"backend": backend, "args": vars(args), "rows": rows, "summary": table}
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        _common.write_json(args.output, payload)
    return payload


if __name__ == "__main__":
    main()
