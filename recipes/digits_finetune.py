"""Fine-tune a pretrained diffusion model into a consistency model on class-conditional digits.

    python recipes/digits_finetune.py                          # pretrain, then 2 seeds
    python recipes/digits_finetune.py --seeds 0 1 2 --finetune-steps 400
    python recipes/digits_finetune.py --pretrained-weights runs/digits_finetune/pretrained.npz

The small-scale version of the paper's ImageNet-64 result (Table 6a,
appendix G.2): a class-conditional `EDM2UNet` is pretrained on the 8x8
digits as a flow-matching diffusion model (`keras_gcm.flow_matching`), then
fine-tuned into a CU consistency model with the `imagenet64_cu_finetune`
preset (its curriculum compressed to the run: a stage per quarter of
`--finetune-steps`), and compared with the same consistency model trained
from scratch for the same number of steps, per seed:

* Frechet digits distance (FDD) of 1- and 2-step samples against the 300
  held-out digits (lower is better);
* class accuracy: the fraction of samples the digits classifier assigns to
  the requested label (labels drawn uniformly).

Writes `metrics.json` (per-seed numbers, means and spreads) and the
pretrained weights `pretrained.npz` to the output folder.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

PRESET = "imagenet64_cu_finetune"


def network_config(small=False):
    """The class-conditional EDM2UNet of the digits runs (`small`: the tests')."""
    if small:
        return dict(img_resolution=8, in_channels=1, label_dim=10, model_channels=8,
                    channel_mult=[1], num_blocks=1, attn_resolutions=[],
                    channels_per_head=8)
    return dict(img_resolution=8, in_channels=1, label_dim=10, model_channels=16,
                channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4],
                channels_per_head=16)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrain-steps", type=int, default=1500)
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--finetune-learning-rate", type=float, default=1e-3)
    parser.add_argument("--ema-decay", type=float, default=0.99)
    parser.add_argument("--eval-samples", type=int, default=1000)
    parser.add_argument("--small", action="store_true", help="the tests' tiny network")
    parser.add_argument("--pretrained-weights", default=None,
                        help="skip pretraining: load these weights (.npz)")
    parser.add_argument("--output", default="runs/digits_finetune")
    parser.add_argument("--verbose", type=int, default=0)
    _common.add_backend_argument(parser)
    return parser.parse_args(argv)


def digits_data():
    from keras_gcm.data import digits

    x, y = digits("train", labels=True)
    return x.astype("float32"), y.astype("int32")


def pretrain(config, steps, batch_size, learning_rate, seed, verbose=0):
    """A flow-matching diffusion model (`FlowMatchingModel`) trained `steps` steps."""
    import keras
    import numpy as np

    import keras_gcm

    x, y = digits_data()
    keras.utils.set_random_seed(seed)
    net = keras_gcm.networks.EDM2UNet(**config, seed=seed)
    fm = keras_gcm.flow_matching.FlowMatchingModel(
        net, conditioning=keras_gcm.presets.components(PRESET)["conditioning"], seed=seed)
    fm.compile(optimizer=keras.optimizers.Adam(learning_rate))
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(x), size=steps * batch_size)
    fm.fit([x[index], y[index]], batch_size=batch_size, epochs=1, verbose=verbose,
           shuffle=False)
    return net


def consistency_model(config, steps, learning_rate, ema_decay, seed, init_weights=None):
    """The fine-tuning preset's CU model on an EDM2UNet (from `init_weights` or random)."""
    import keras

    import keras_gcm

    net = keras_gcm.networks.EDM2UNet(**config, seed=seed + 1000)
    net.build()
    if init_weights is not None:
        net.set_weights(init_weights)
    curriculum = keras_gcm.schedules.EpsilonHalvingCurriculum(
        0.25, max(1, steps // 4), factor=0.25)
    model = keras_gcm.ConsistencyModel.from_preset(
        PRESET, net, curriculum=curriculum, ema_decay=ema_decay, seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, beta_2=0.99))
    model.build((None, 8, 8, 1))
    return model


def train(model, steps, batch_size, seed, verbose=0):
    import numpy as np

    x, y = digits_data()
    index = np.random.default_rng(seed + 7).integers(0, len(x), size=steps * batch_size)
    model.fit(x[index], y[index], batch_size=batch_size, epochs=1, verbose=verbose,
              shuffle=False)
    return model


def evaluate(model, num_samples, seed):
    """1- and 2-step FDD and class accuracy of class-conditional samples."""
    import numpy as np

    from keras_gcm import samplers
    from keras_gcm.metrics import digits_classifier
    from keras_gcm.metrics import frechet_digits_distance

    classifier = digits_classifier()
    labels = np.random.default_rng(seed + 11).integers(0, 10, size=num_samples).astype("int32")
    out = {}
    for name, draw in (("1step", samplers.one_step), ("2step", samplers.two_step)):
        samples = np.clip(np.asarray(draw(model, num_samples, seed=seed + 13,
                                          class_labels=labels)), -1, 1)
        out[f"fdd_{name}"] = float(frechet_digits_distance(samples))
        out[f"accuracy_{name}"] = float(classifier.accuracy(samples, labels))
    return out


def summarize(runs):
    import numpy as np

    summary = {}
    for key in runs[0]:
        values = np.array([r[key] for r in runs], dtype=float)
        summary[key] = {"mean": float(values.mean()),
                        "spread": float(values.max() - values.min()),
                        "values": values.tolist()}
    return summary


def main(argv=None):
    args = parse_args(argv)
    backend = _common.select_backend(args.backend)
    import numpy as np

    out = _common.prepare_output(args.output)
    config = network_config(args.small)
    with _common.Timer() as timer:
        if args.pretrained_weights:
            with np.load(args.pretrained_weights) as data:
                weights = [data[f"w{i}"] for i in range(len(data.files))]
        else:
            net = pretrain(config, args.pretrain_steps, args.batch_size, args.learning_rate,
                           seed=1234, verbose=args.verbose)
            weights = net.get_weights()
            np.savez(os.path.join(out, "pretrained.npz"),
                     **{f"w{i}": w for i, w in enumerate(weights)})
    pretrain_seconds = timer.seconds
    runs = {"finetuned": [], "scratch": [], "pretrained_at_step_0": []}
    for seed in args.seeds:
        for kind in ("finetuned", "scratch"):
            model = consistency_model(config, args.finetune_steps, args.finetune_learning_rate,
                                      args.ema_decay, seed,
                                      weights if kind == "finetuned" else None)
            if kind == "finetuned":
                runs["pretrained_at_step_0"].append(
                    evaluate_raw(model, args.eval_samples, seed))
            train(model, args.finetune_steps, args.batch_size, seed, args.verbose)
            runs[kind].append(evaluate(model, args.eval_samples, seed))
            print(f"[{backend}] seed {seed} {kind}: {runs[kind][-1]}", flush=True)
    metrics = {
        "backend": backend, "preset": PRESET, "network": config,
        "pretrain_steps": args.pretrain_steps, "finetune_steps": args.finetune_steps,
        "batch_size": args.batch_size, "seeds": args.seeds, "eval_samples": args.eval_samples,
        "pretrain_seconds": round(pretrain_seconds, 1),
        **{kind: summarize(values) for kind, values in runs.items()},
    }
    _common.write_json(os.path.join(out, "metrics.json"), metrics)
    for key in ("fdd_1step", "fdd_2step", "accuracy_1step", "accuracy_2step"):
        print(f"{key}: fine-tuned {metrics['finetuned'][key]['mean']:.3f} "
              f"(spread {metrics['finetuned'][key]['spread']:.3f}) vs scratch "
              f"{metrics['scratch'][key]['mean']:.3f} "
              f"(spread {metrics['scratch'][key]['spread']:.3f})")
    return metrics


def evaluate_raw(model, num_samples, seed):
    """`evaluate` with the raw (pretrained) weights, before any fine-tuning step."""
    import numpy as np

    from keras_gcm import samplers
    from keras_gcm.metrics import digits_classifier
    from keras_gcm.metrics import frechet_digits_distance

    labels = np.random.default_rng(seed + 11).integers(0, 10, size=num_samples).astype("int32")
    samples = np.clip(np.asarray(samplers.one_step(
        model, num_samples, seed=seed + 13, class_labels=labels, use_ema=False)), -1, 1)
    return {"fdd_1step": float(frechet_digits_distance(samples)),
            "accuracy_1step": float(digits_classifier().accuracy(samples, labels))}


if __name__ == "__main__":
    main()
