"""Eager vs compiled (`jit_compile=True`, torch.compile) torch train step.

Trains the digits recipe's SongUNet (8x8x1, the recipe's default network,
dropout on) under the torch backend twice from the same seeds: once eagerly
(Keras' torch default) and once with `model.compile(jit_compile=True)`, which
runs the train step through `torch.compile`. Reports, per preset and mode, the
first call's time (for the compiled step: tracing and code generation), the
steady-state milliseconds per step, the speed-up, and the largest difference
between the two modes' per-step losses on the same draws. Prints a table and
writes JSON.

    python benchmarks/torch_compile.py                  # CPU, digits SongUNet
    python benchmarks/torch_compile.py --batch-size 512 --steps 50   # e.g. on a GPU
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "recipes"))
import _common  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["gcm_cu", "gcm_vu"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup-steps", type=int, default=3,
                        help="steps of the first fit call (includes compilation)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps after warm-up")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "torch_compile.json"))
    args = parser.parse_args(argv)
    _common.check_flags(parser, args, positive=("batch_size", "warmup_steps", "steps"))
    return args


def run(preset, jit_compile, args):
    """(first-call seconds, ms per step, per-step losses) of one mode."""
    import numpy as np
    import keras
    import torch

    import digits as digits_recipe
    import keras_gcm

    keras.utils.clear_session()
    torch._dynamo.reset()
    keras.utils.set_random_seed(0)
    recipe_args = digits_recipe.parse_args(["--preset", preset])
    network = digits_recipe.build_network(recipe_args, keras_gcm.presets.time_inputs(preset))
    model = keras_gcm.ConsistencyModel.from_preset(preset, network, seed=0)
    model.compile(optimizer=keras_gcm.optimizers.RAdam(2e-3), jit_compile=jit_compile)
    model.build((None,) + digits_recipe.IMAGE_SHAPE)
    images = keras_gcm.data.digits("train")
    n = args.batch_size * (args.warmup_steps + args.steps)
    data = images[np.arange(n) % len(images)]
    losses = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: losses.append(float(logs["loss"])))
    warm = data[: args.batch_size * args.warmup_steps]
    start = time.perf_counter()
    model.fit(warm, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0,
              callbacks=[record])
    first = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(data[len(warm):], batch_size=args.batch_size, epochs=1, shuffle=False,
              verbose=0, callbacks=[record])
    seconds = time.perf_counter() - start
    return first, 1000.0 * seconds / args.steps, losses


def main(argv=None):
    args = parse_args(argv)
    _common.select_backend("torch")
    import keras

    if keras.backend.backend() != "torch":
        raise SystemExit("benchmarks/torch_compile.py measures the torch backend: run it "
                         "with KERAS_BACKEND=torch.")
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    rows = []
    for preset in args.presets:
        eager = run(preset, False, args)
        compiled = run(preset, True, args)
        # Keras' epoch mean up to each step: the per-step losses agree iff these do.
        difference = max(abs(a - b) / max(abs(a), 1e-12)
                         for a, b in zip(eager[2], compiled[2]))
        rows.append({
            "preset": preset,
            "eager_first_call_s": eager[0], "compiled_first_call_s": compiled[0],
            "eager_ms_per_step": eager[1], "compiled_ms_per_step": compiled[1],
            "speedup": eager[1] / compiled[1],
            "max_relative_loss_difference": difference,
        })
    header = (f"{'preset':8} {'eager ms/step':>14} {'compiled ms/step':>17} {'speed-up':>9} "
              f"{'compile s':>10} {'max rel. loss diff':>19}")
    print(f"torch {torch.__version__} on {device}, batch {args.batch_size}, "
          f"{args.steps} timed steps after {args.warmup_steps} warm-up steps")
    print(header)
    for r in rows:
        print(f"{r['preset']:8} {r['eager_ms_per_step']:14.1f} {r['compiled_ms_per_step']:17.1f} "
              f"{r['speedup']:9.2f} {r['compiled_first_call_s']:10.1f} "
              f"{r['max_relative_loss_difference']:19.2e}")
    result = {"device": device, "torch": torch.__version__, "batch_size": args.batch_size,
              "steps": args.steps, "warmup_steps": args.warmup_steps, "rows": rows}
    _common.write_json(args.output, result)
    print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
