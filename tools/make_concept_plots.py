"""Draw the figures of the docs' concept pages into docs/images/ (committed PNGs).

    python tools/make_concept_plots.py            # any Keras backend

Every curve is computed by the library's own layers (not re-typed formulas),
so the figures show what the code computes:

* `concept_interpolant.png`: alpha(t), sigma(t), c_in(t), c_out(t) of `OTFlow`;
* `concept_discretisations.png`: h(t) of every discretisation (Fig. 7a);
* `concept_conditionings.png`: c(t) and the perceived step c(t) - c(t - h(t));
* `concept_weighting.png`: w(t) and the importance weight w(t) / p(t);
* `concept_time_pdfs.png`: the t-sampling densities of Table 7g;
* `concept_uniform_power.png`: the uniform-power density of s (Eq. 17) and
  a histogram of its samples, and the joint (t, s) draws of a VU model;
* `concept_mmd_kernel.png`: the time-aware MMD kernel weight (Eq. 44).
"""

import argparse
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _np(x):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x), dtype="float64")


def interpolant(plt, out):
    from keras_gcm.interpolants import OTFlow

    flow = OTFlow()
    t = np.linspace(0.0, 1.0, 401).astype("float32")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    axes[0].plot(t, _np(flow.alpha(t)), label=r"$\alpha(t) = 1 - t$")
    axes[0].plot(t, _np(flow.sigma(t)), label=r"$\sigma(t) = t$")
    axes[0].set_title("OT flow-matching interpolant")
    axes[1].plot(t, _np(flow.c_in(t)), label=r"$c_{in}(t)$")
    axes[1].plot(t, _np(flow.c_out(t)) + 0 * t, label=r"$c_{out}(t)$")
    axes[1].set_title(r"EDM preconditioning, $\sigma_d = 0.5$")
    for ax in axes:
        ax.set_xlabel("t")
        ax.legend()
        ax.grid(alpha=0.3)
    _save(fig, out, "concept_interpolant.png")


def discretisations(plt, out):
    from keras_gcm import presets
    from keras_gcm import schedules as S

    t = np.linspace(0.006, 0.994, 500).astype("float32")
    steps = [
        ("constant (Eq. 26)", S.ConstantStep()),
        ("EDM (Eq. 27)", S.EDMStep()),
        ("ECT (Eq. 28)", S.ECTStep()),
        ("IMM (Eq. 29)", S.IMMStep()),
        ("linear decrease (Eq. 30)", S.LinearDecreasingStep()),
        ("quadratic decrease (Eq. 31)", S.QuadraticDecreasingStep()),
        ("cubic decrease (Eq. 32)", S.CubicDecreasingStep()),
        ("quadratic increase (Eq. 33)", S.QuadraticIncreasingStep()),
        ("quadratic concave (Eq. 34)", S.QuadraticConcaveStep()),
        ("quadratic convex (Eq. 35)", S.QuadraticConvexStep()),
        ("exponential, equal integral", S.ExponentialStep(
            presets.EXPONENTIAL_EQUAL_INTEGRAL_EPSILON, 3.5)),
        ("exponential 0.005 exp(-3.5t) (GCM)", S.ExponentialStep(0.005, 3.5)),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, (label, step) in enumerate(steps):
        h = _np(step(t))
        style = "-" if i < 10 else ("--" if i == 10 else "-")
        width = 2.5 if i == 11 else 1.2
        for ax in axes:
            ax.plot(t, np.maximum(h, 1e-7), style, lw=width, label=label)
    axes[0].set_title("h(t) = t - r, same integral 0.005/3 over [0, 1]")
    axes[1].set_yscale("log")
    axes[1].set_ylim(1e-5, 3e-2)
    axes[1].set_title("log scale")
    for ax in axes:
        ax.set_xlabel("t")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower left", ncol=2)
    _save(fig, out, "concept_discretisations.png")


def conditionings(plt, out):
    from keras_gcm import schedules as S

    t = np.linspace(0.006, 0.994, 500).astype("float32")
    conds = [
        ("c(t) = t", S.IdentityTime()),
        ("c(t) = 1000 t (IMM), / 1000", S.LinearTime(1000.0)),
        ("c(t) = (exp(3.5 t) - 1) / 3.5 (GCM)", S.ExponentialTime(3.5)),
        ("c(t) = ln(0.5 tan(pi t / 2)) / 4 (EDM, ECT)", S.LogSigmaTime()),
    ]
    h = S.ExponentialStep(0.005, 3.5)
    r = t - _np(h(t)).astype("float32")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for label, cond in conds:
        scale = 1000.0 if isinstance(cond, S.LinearTime) else 1.0
        c_t = _np(cond(t)) / scale
        axes[0].plot(t, c_t, label=label)
        perceived = (_np(cond(t)) - _np(cond(r))) / scale
        axes[1].plot(t, perceived, label=label)
    axes[0].set_title("time conditioning c(t) (network input)")
    axes[1].set_title("perceived step c(t) - c(t - h(t)), h = 0.005 exp(-3.5 t)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("t")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, out, "concept_conditionings.png")


def weighting(plt, out):
    from keras_gcm import time_sampling as T
    from keras_gcm import weighting as W

    t = np.linspace(0.006, 0.994, 500).astype("float32")
    gamma = _np(W.GammaWeight(1.0, 6.0)(t))
    sampler = T.ConstantUpperLimit(T.SineTime(1.0, 0.01))
    p = _np(sampler.density(t, np.full_like(t, 0.006)))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].plot(t, _np(W.ConstantWeight()(t)), label="constant w(t) = 1")
    axes[0].plot(t, gamma / gamma.max(), label="Gamma t exp(-6 t) (scaled to max 1)")
    axes[0].set_title("loss weighting w(t)")
    axes[1].plot(t, gamma, label="effective weight with importance weights: w(t)")
    axes[1].plot(t, gamma / p, label="per-sample weight w(t) / p(t), sine sampling")
    axes[1].plot(t, gamma * p, ":", label="effective weight w(t) p(t), sine, no importance weights")
    axes[1].set_title("Gamma weight with sine t-sampling")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("t")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, out, "concept_weighting.png")


def time_pdfs(plt, out):
    from keras_gcm import time_sampling as T

    q = np.linspace(0.0, 1.0, 500).astype("float32")
    dists = [
        ("uniform", T.UniformTime()),
        ("sine(1, 0.1)", T.SineTime(1.0, 0.1)),
        ("sine(1, 0.01) (GCM)", T.SineTime(1.0, 0.01)),
        ("sine(1, 0.001)", T.SineTime(1.0, 0.001)),
        ("cosh(1.5, 0)", T.CoshTime(1.5, 0.0)),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for label, dist in dists:
        axes[0].plot(q, _np(dist.pdf(q)), label=label)
        axes[1].plot(q, _np(dist.cdf(q)), label=label)
    axes[0].set_title("t-sampling density p(q) on [0, 1] (Table 7g)")
    axes[1].set_title("CDF")
    for ax in axes:
        ax.set_xlabel("q  (t = t0 + (tT - t0) q)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, out, "concept_time_pdfs.png")


def uniform_power(plt, out):
    from keras_gcm import time_sampling as T

    q = np.geomspace(1e-4, 1.0, 400).astype("float32")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for nu in (1.0, 2.0, 4.0, 8.0):
        dist = T.UniformPowerTime(nu)
        axes[0].plot(q, _np(dist.pdf(q)), label=f"nu = {nu:g}" + (" (GCM)" if nu == 4 else ""))
    axes[0].set_xscale("log")
    axes[0].set_title("uniform-power density of s (Eq. 17)")
    axes[0].set_xlabel("q_s")
    axes[0].legend(fontsize=8)
    dist = T.UniformPowerTime(4.0, seed=0)
    samples = _np(dist.sample((200_000,)))
    bins = np.linspace(0.0, 1.0, 81)
    axes[1].hist(samples, bins=bins, density=True, alpha=0.5, label="200K samples")
    grid = np.linspace(0.005, 1.0, 300).astype("float32")
    axes[1].plot(grid, _np(dist.pdf(grid)), "k", label="pdf, nu = 4")
    axes[1].set_ylim(0, 12)
    axes[1].set_xlabel("q_s")
    axes[1].set_title("sampler vs density, nu = 4")
    axes[1].legend(fontsize=8)
    vu = T.VariableUpperLimit(T.UniformPowerTime(4.0), T.SineTime(1.0, 0.01), seed=0)
    t, s = vu.sample(4000)
    axes[2].scatter(_np(s), _np(t), s=1, alpha=0.4)
    axes[2].plot([0, 1], [0, 1], "k:", lw=0.8)
    axes[2].set_xlabel("s")
    axes[2].set_ylabel("t")
    axes[2].set_title("VU draws: s ~ uniform-power, t | s ~ sine")
    for ax in axes:
        ax.grid(alpha=0.3)
    _save(fig, out, "concept_uniform_power.png")


def mmd_kernel(plt, out):
    gap = np.linspace(0.0, 0.5, 300)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for sigma, label in ((0.05, "sigma = 0.05 (GCM-CU)"), (0.1, "sigma = 0.1 (GCM-VU)")):
        ax.plot(gap, np.exp(-gap / sigma), label=label)
    ax.axhline(1.0, color="gray", ls="--", label="sigma = inf (IMM, shared times)")
    ax.set_xlabel("|t_j - t_k| + |s_j - s_k|")
    ax.set_title("time-aware MMD kernel weight (Eq. 44)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, out, "concept_mmd_kernel.png")


def _save(fig, out, name):
    fig.tight_layout()
    path = os.path.join(out, name)
    fig.savefig(path, dpi=90)
    print("wrote", path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=os.path.join(ROOT, "docs", "images"))
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(args.output, exist_ok=True)
    for draw in (interpolant, discretisations, conditionings, weighting, time_pdfs,
                 uniform_power, mmd_kernel):
        draw(plt, args.output)
        plt.close("all")


if __name__ == "__main__":
    main()
