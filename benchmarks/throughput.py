"""Training throughput of the ConsistencyModel step (DDPM++ at 32x32).

Times `model.fit` steps after warm-up (compilation) under the current Keras
backend and reports images/s, sec/kimg, peak device memory and the achieved
fraction of the card's peak FLOP rate, as a table and as JSON.

    # on a GPU machine (the paper's CIFAR-10 setting)
    KERAS_BACKEND=jax python benchmarks/throughput.py --batch-size 512 --precision bf16
    # anywhere, in seconds (a tiny SongUNet at 8x8; exercised in CI)
    python benchmarks/throughput.py --tiny

Configurations are presets: `gcm_cu` / `gcm_vu` (with time-aware MMD) and
`cu_e` / `vu_k` (the same without MMD). FLOPs per step come from XLA's cost
analysis of the compiled train step on JAX; on other backends the DDPM++
figure of 42.4 GFLOPs per image forward (x4 for a consistency step: student
forward, teacher forward, backward) is used for the full-size network.
"""

import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "recipes"))
import _common  # noqa: E402

# Dense peak TFLOP/s by card and precision (vendor specifications, SXM parts).
PEAK_TFLOPS = {
    "H200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H100": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
}
DDPMPP_FORWARD_GFLOPS = 42.4  # EDM's DDPM++ at 32x32, per image (DESIGN.md section 5)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["gcm_cu", "cu_e", "gcm_vu", "vu_k"])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="bf16")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per configuration")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                        help="compile the step (torch: torch.compile; default off there)")
    parser.add_argument("--tiny", action="store_true",
                        help="a tiny SongUNet at 8x8, batch 8, 2 steps: runs in seconds on CPU")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--profile", action="store_true",
                        help="for the first preset, profile a few steps (device time by "
                             "kernel category and the top kernels)")
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/...)")
    _common.add_backend_argument(parser)
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch_size, args.steps, args.warmup_steps, args.resolution = 8, 2, 1, 8
        if args.presets == parser.get_default("presets"):
            args.presets = ["gcm_cu", "gcm_vu"]
    return args


def set_precision(backend, precision):
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    tf32 = precision == "tf32"
    if backend == "jax":
        import jax

        # fp32 asks XLA for full float32 matmuls/convs; tf32 and bf16 allow TF32.
        jax.config.update("jax_default_matmul_precision",
                          "highest" if precision == "fp32" else "tensorfloat32")
    elif backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = precision != "fp32"
        torch.backends.cudnn.allow_tf32 = precision != "fp32"
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(tf32 or precision == "bf16")


def device_info(backend):
    """(device name, is_gpu) of the first accelerator."""
    if backend == "jax":
        import jax

        d = jax.devices()[0]
        return getattr(d, "device_kind", str(d)), d.platform == "gpu"
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0), True
        return "cpu", False
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU"), True
    return "cpu", False


def reset_peak_memory(backend):
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
    elif backend == "tensorflow":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            tf.config.experimental.reset_memory_stats("GPU:0")


def peak_memory_gib(backend, is_gpu):
    """Peak device memory (GiB); the process' max RSS on CPU."""
    if is_gpu:
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            return stats.get("peak_bytes_in_use", 0) / 2**30
        if backend == "torch":
            import torch

            return torch.cuda.max_memory_allocated() / 2**30
        import tensorflow as tf

        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def build_model(args, preset):
    import keras

    import keras_gcm

    if args.tiny:
        network = keras_gcm.networks.SongUNet(
            img_resolution=args.resolution, in_channels=3, model_channels=8,
            channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4],
            dropout=args.dropout, time_inputs=keras_gcm.presets.time_inputs(preset), seed=0,
        )
    else:
        network = keras_gcm.networks.SongUNet.ddpmpp(
            img_resolution=args.resolution, in_channels=3, dropout=args.dropout,
            time_inputs=keras_gcm.presets.time_inputs(preset), seed=0,
        )
    model = keras_gcm.ConsistencyModel.from_preset(preset, network, ema_decay=0.9999, seed=0)
    jit = {"auto": "auto", "on": True, "off": False}[args.jit]
    if jit == "auto" and keras.backend.backend() == "torch":
        jit = False
    model.compile(optimizer=keras_gcm.optimizers.RAdam(1e-4), jit_compile=jit)
    model.build((None, args.resolution, args.resolution, 3))
    return model


def jax_step_flops(model, batch):
    """FLOPs of one compiled train step from XLA's cost analysis (JAX only)."""
    import jax

    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
        [v.value for v in model.metrics_variables],
    )
    lowered = jax.jit(model.train_step).lower(state, batch)
    try:  # the HLO's cost analysis, without compiling a second time
        analysis = lowered.cost_analysis()
    except Exception:
        analysis = None
    if not analysis:
        analysis = lowered.compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0)) or None


def _kernel_category(name):
    lower = name.lower()
    for category, keys in (
        ("convolution", ("conv", "cudnn", "xmma", "implicit_gemm", "wgrad", "dgrad", "fprop")),
        ("matmul", ("gemm", "cublas", "matmul", "dot")),
        ("copy/transpose", ("copy", "memcpy", "memset", "transpose")),
        ("reduction", ("reduce", "reduction")),
        ("fused elementwise", ("fusion", "loop_", "input_", "elementwise")),
    ):
        if any(k in lower for k in keys):
            return category
    return "other"


def summarize_perfetto(path, wall_seconds):
    """Device-kernel time by category and the top kernels of a JAX perfetto trace."""
    import collections
    import gzip

    with gzip.open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    device_pids = {
        e["pid"] for e in events
        if e.get("ph") == "M" and e.get("name") == "process_name"
        and "gpu" in str(e.get("args", {}).get("name", "")).lower()
    }
    kernels = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("pid") in device_pids:
            kernels[e["name"]] += e.get("dur", 0.0) / 1e6
    categories = collections.Counter()
    for name, secs in kernels.items():
        categories[_kernel_category(name)] += secs
    busy = sum(kernels.values())
    return {
        "wall_seconds": wall_seconds,
        "device_kernel_seconds": busy,
        "device_busy_fraction": busy / wall_seconds if wall_seconds else None,
        "by_category_seconds": dict(categories.most_common()),
        "top_kernels_seconds": dict(kernels.most_common(15)),
    }


def profile_steps(model, data, args, backend, out_dir, steps=3):
    """Profiles `steps` training steps; returns a summary (device time by kernel)."""
    batch = data[: args.batch_size * steps]
    if backend == "jax":
        import glob

        import jax

        trace_dir = os.path.join(out_dir, "jax_trace")
        start = time.perf_counter()
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            model.fit(batch, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0)
        wall = time.perf_counter() - start
        traces = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
        return summarize_perfetto(traces[0], wall) if traces else {"error": "no trace written"}
    if backend == "torch":
        import torch

        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            model.fit(batch, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
        key = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
        return {"table": prof.key_averages().table(sort_by=key, row_limit=20)}
    return {"error": "profiling is implemented for jax and torch"}


def run_config(args, backend, preset, is_gpu):
    import numpy as np
    import keras

    keras.utils.clear_session()
    set_precision(backend, args.precision)  # clear_session resets the dtype policy
    model = build_model(args, preset)
    rng = np.random.default_rng(0)
    shape = (args.resolution, args.resolution, 3)
    n = args.batch_size * max(args.steps, args.warmup_steps)
    data = rng.uniform(-1, 1, (n,) + shape).astype("float32")
    warm = data[: args.batch_size * args.warmup_steps]
    model.fit(warm, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0)
    reset_peak_memory(backend)
    start = time.perf_counter()
    model.fit(data[: args.batch_size * args.steps], batch_size=args.batch_size, epochs=1,
              shuffle=False, verbose=0)  # fit syncs the state at its end
    seconds = time.perf_counter() - start
    memory = peak_memory_gib(backend, is_gpu)
    images_per_s = args.batch_size * args.steps / seconds
    step_flops = None
    if not args.tiny and args.resolution == 32:
        step_flops = 4 * DDPMPP_FORWARD_GFLOPS * 1e9 * args.batch_size
    elif backend == "jax" and not is_gpu:
        # XLA's CPU cost analysis counts convolutions; on GPU they are cuDNN
        # custom calls it does not count.
        step_flops = jax_step_flops(model, data[: args.batch_size])
    result = {
        "preset": preset,
        "mmd": model.consistency_loss.group_size > 1,
        "images_per_s": images_per_s,
        "sec_per_kimg": 1000.0 / images_per_s,
        "ms_per_step": 1000.0 * seconds / args.steps,
        "peak_memory_gib": memory,
        "gflops_per_image": None if step_flops is None else step_flops / args.batch_size / 1e9,
        "achieved_tflops": None if step_flops is None else step_flops * args.steps / seconds / 1e12,
        "params": model.network.count_params(),
    }
    print(json.dumps(result), flush=True)
    if args.profile and preset == args.presets[0]:
        out_dir = os.path.dirname(os.path.abspath(args.output)) if args.output else "/tmp"
        try:
            result["profile"] = profile_steps(model, data, args, backend,
                                              os.path.join(out_dir, f"profile_{preset}"))
        except Exception as error:  # a profiler failure must not lose the timings
            result["profile"] = {"error": repr(error)}
        print(json.dumps(result, indent=1)[:6000], flush=True)
    return result


def main(argv=None):
    args = parse_args(argv)
    backend = _common.select_backend(args.backend)
    set_precision(backend, args.precision)
    name, is_gpu = device_info(backend)
    peak = args.peak_tflops
    if peak is None:
        for card, table in PEAK_TFLOPS.items():
            if card in name:
                peak = table[args.precision]
    results = []
    for preset in args.presets:
        result = run_config(args, backend, preset, is_gpu)
        result["fraction_of_peak"] = (
            None if peak is None or result["achieved_tflops"] is None
            else result["achieved_tflops"] / peak
        )
        results.append(result)
    payload = {
        "backend": backend, "device": name, "precision": args.precision,
        "batch_size": args.batch_size, "resolution": args.resolution, "steps": args.steps,
        "tiny": args.tiny, "peak_tflops": peak, "results": results,
    }
    header = (f"{'preset':10s} {'MMD':>4s} {'images/s':>10s} {'sec/kimg':>9s} {'ms/step':>8s} "
              f"{'peak GiB':>9s} {'GFLOP/img':>10s} {'TFLOP/s':>8s} {'of peak':>8s}")
    print(f"\n{backend} on {name}, {args.precision}, batch {args.batch_size}, "
          f"{args.resolution}x{args.resolution}")
    print(header)
    for r in results:
        fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
        print(f"{r['preset']:10s} {'yes' if r['mmd'] else 'no':>4s} {r['images_per_s']:10.1f} "
              f"{r['sec_per_kimg']:9.3f} {r['ms_per_step']:8.1f} {r['peak_memory_gib']:9.2f} "
              f"{fmt(r['gflops_per_image'], '10.1f'):>10s} {fmt(r['achieved_tflops'], '8.1f'):>8s} "
              f"{fmt(r['fraction_of_peak'], '8.1%'):>8s}")
    import keras

    keras.mixed_precision.set_global_policy("float32")  # leave the process as found
    output = args.output or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results",
        f"throughput_{backend}_{args.precision}{'_tiny' if args.tiny else ''}.json")
    os.makedirs(os.path.dirname(output), exist_ok=True)
    _common.write_json(output, payload)
    print(f"wrote {output}")
    return payload


if __name__ == "__main__":
    main()
