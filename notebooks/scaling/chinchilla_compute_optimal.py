# %% [markdown]
# # Compute-optimal models grow parameters and data in about equal proportion
# **Paper:** Hoffmann et al. (2022), "Training Compute-Optimal Large Language Models" (Chinchilla), arXiv:2203.15556; Besiroglu, Erdil, Barnett, You (2024), "Chinchilla Scaling: A replication attempt", arXiv:2404.10102.
# **Claim:** for a compute budget C, the loss-minimising model size grows as N_opt ∝ C^a with a ≈ 0.5 (paper 0.46–0.50 from three approaches; Epoch's refit of Approach 3 gives 0.513), and a law fitted at small budgets predicts the compute-optimal loss at larger ones.
#
# Hoffmann et al. estimate a three ways: (1) the lower envelope of loss-vs-FLOPs training curves, (2) IsoFLOP
# profiles — a parabola in log N per budget — and (3) a parametric fit L(N, D) = E + A/N^α + B/D^β, for which
# a = β/(α+β). Epoch's replication showed (3) needs care: log-space logsumexp prediction, summed Huber δ = 1e-3,
# tight optimizer tolerances, many starts and bootstraps over runs (all in `lossbook.scaling.fit`). We run
# IsoFLOP sweeps of tiny 2-layer GPTs on a synthetic Markov language with known entropy, at ≥ 4 budgets spanning
# 1.5 decades of exact training FLOPs (attention and unembedding included), and compare the three estimates.

# %% tags=["parameters"]
mlflow_run_id = ""
profile = "interactive"
seed = 0
device = "cpu"
threads = 1  # torch intra-op CPU threads; 1 is fastest for tiny models, 0 keeps the torch default; in [0, inf)
vocab_size = 128  # in [1, inf)
order = 1
zipf = 1.2
mix = [0.2, 0.8]  # in [0, 1]
n_layer = 2  # in [1, inf)
ladder = [8, 12, 16, 24, 32, 48, 64, 96, 128]  # in [1, inf)
budgets = [1.0e10, 3.2e10, 1.0e11, 3.2e11]  # > 0
n_sizes = 5  # in [1, inf)
n_evals = 8  # in [1, inf)
block_size = 32  # in [1, inf)
batch_size = 32  # in [1, inf)
lr = 0.01  # > 0
warmup = 20  # in [0, inf)
n_boot = 200  # in [1, inf)
n_starts = 64  # in [1, inf)
csv_path = ""

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from lossbook import claims, plotting, repro, tracking
from lossbook.scaling.analysis import decades
from lossbook.scaling.fit import envelope_approach, fit_chinchilla, isoflop_approach
from lossbook.scaling.markov import MarkovSource
from lossbook.scaling.sweep import gpt_size, isoflop_widths, predicted_optimal_loss, run_point

tracking.attach(mlflow_run_id, "chinchilla_compute_optimal", globals())
plotting.setup()
repro.seed_everything(seed)
repro.set_threads(threads)
data_cfg = {"kind": "markov", "vocab_size": vocab_size, "order": order, "zipf": zipf, "mix": list(mix), "seed": seed, "eval_tokens": 8192}
H = MarkovSource(vocab_size, order, zipf, tuple(mix), seed).entropy_rate()
tokens_per_step = batch_size * block_size
print(f"entropy rate H = {H:.4f} nats/token; budgets span {decades(budgets):.2f} decades")

# %% [markdown]
# ## IsoFLOP sweeps
# Per budget, `n_sizes` consecutive widths from the ladder centred on ~20 tokens/parameter; each trains for
# D = C / (exact training FLOPs per token) tokens with a cosine schedule whose horizon is the run length.

# %%
rows, curves = [], []
for C in budgets:
    for d in tqdm(isoflop_widths(C, ladder, n_layer, vocab_size, block_size, n_sizes), desc=f"C={C:.2g}"):
        _, fpt = gpt_size(d, n_layer, vocab_size, block_size)
        steps = max(int(round(C / (fpt * tokens_per_step))), 10)
        cfg = {"data": data_cfg, "model": {"n_layer": n_layer, "d_model": d, "n_head": max(1, d // 16), "block_size": block_size},
               "train": {"steps": steps, "batch_size": batch_size, "lr": lr, "warmup": min(warmup, steps // 5), "seed": seed, "n_evals": n_evals}, "device": device}
        r = run_point(cfg, name=f"chinchilla/C{C:.2g}-d{d}")
        rows.append({"budget": C, "width": d, "steps": steps, **{k: v for k, v in r.items() if not isinstance(v, dict)}})
        curves.append((r["N"], np.array(r["val_curve"]["flops"]), np.array(r["val_curve"]["val_loss"])))
df = pd.DataFrame(rows)
df["L"] = df["val_loss_adj"]
tracking.log_dict(df.to_dict(orient="list"), "sweep.json")
df[["budget", "width", "N", "D", "C", "steps", "val_loss_adj", "wall_s"]]

# %% [markdown]
# ## Approach 2: IsoFLOP parabolas; Approach 1: lower envelope; Approach 3: parametric fit

# %%
a2 = isoflop_approach(df["budget"], df["N"], df["L"])
a1 = envelope_approach(curves, n_points=16)
a3 = fit_chinchilla(df["N"], df["D"], df["L"], groups=np.arange(len(df)), n_boot=n_boot, seed=seed, n_starts=n_starts)
est = {"approach1_envelope": a1["a"], "approach2_isoflop": a2["a"], "approach3_parametric": a3.a}
print("a estimates:", {k: round(v, 3) for k, v in est.items()})
print("Approach 3:", {k: round(v, 4) for k, v in a3.as_dict().items()}, "CIs:", {k: tuple(round(x, 3) for x in v) for k, v in a3.ci.items()})
tracking.log_metrics({f"a/{k}": v for k, v in est.items()} | {f"fit/{k}": v for k, v in a3.as_dict().items()})

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for (C, g), p in zip(df.groupby("budget"), a2["parabolas"]):
    (line,) = axes[0].plot(g["N"], g["L"], "o", label=f"C = {C:.2g} FLOPs")
    xs = np.geomspace(g["N"].min() / 1.3, g["N"].max() * 1.3, 100)
    axes[0].plot(xs, np.polyval(p.coef[::-1], np.log(xs)), color=line.get_color(), lw=1)
    axes[0].plot(p.x_opt, p.y_opt, "*", color=line.get_color(), ms=12)
axes[0].set_xscale("log")
axes[0].set_xlabel("non-embedding parameters N")
axes[0].set_ylabel("validation loss (nats/token)")
axes[0].set_title("IsoFLOP profiles (stars: parabola minima)")
axes[0].legend(fontsize=8)
Cs = np.geomspace(min(budgets), max(budgets), 50)
axes[1].plot(a2["budgets"], a2["N_opt"], "o", label=f"Approach 2 (a = {a2['a']:.3f})")
axes[1].plot(a1["C"], a1["N_opt"], "s", ms=4, alpha=0.6, label=f"Approach 1 (a = {a1['a']:.3f})")
axes[1].plot(Cs, np.exp(a2["intercept"]) * Cs ** a2["a"], "C0-", lw=1)
n3 = np.array([predicted_optimal_loss(a3.predict, c, n_layer, vocab_size, block_size)[1] for c in Cs])
axes[1].plot(Cs, n3, "C2--", label=f"Approach 3 (a = {a3.a:.3f})")
axes[1].set_xscale("log")
axes[1].set_yscale("log")
axes[1].set_xlabel("training compute C (exact FLOPs)")
axes[1].set_ylabel("compute-optimal N")
axes[1].legend(fontsize=8)
tracking.log_figure(fig, "isoflop_and_nopt")
plt.show()

# %% [markdown]
# ## Extrapolation: fit on budgets ≤ C_max/10, predict the compute-optimal loss at C_max

# %%
c_max = max(budgets)
small = df[df["budget"] <= c_max / 10 * (1 + 1e-9)]
fit_small = fit_chinchilla(small["N"], small["D"], small["L"], n_starts=n_starts)
pred_loss, pred_n = predicted_optimal_loss(fit_small.predict, c_max, n_layer, vocab_size, block_size)
obs_loss = float(a2["L_opt"][np.argmax(a2["budgets"])])
rel_err = abs(pred_loss - obs_loss) / obs_loss
print(f"fit on {len(small)} runs at C <= {c_max / 10:.2g}: predicted optimal loss at C_max {pred_loss:.4f} (N* = {pred_n:.3g}); observed (parabola minimum) {obs_loss:.4f}; rel. error {100 * rel_err:.2f}%")
tracking.log_metrics({"extrapolation/pred": pred_loss, "extrapolation/obs": obs_loss, "extrapolation/rel_err": rel_err})

# %% [markdown]
# ## Claims (thresholds from the issue, fixed before the run)

# %%
vals = list(est.values())
max_gap = max(vals) - min(vals)
claims.record(
    "three_approaches_agree",
    statement="The three estimates of a (N_opt ∝ C^a) agree within ±0.1 and lie in [0.35, 0.65]",
    paper="Hoffmann et al. 2022 Table 2; Besiroglu et al. 2024",
    paper_value="a = 0.50 / 0.49 / 0.46 (Approaches 1/2/3); Epoch refit 0.513",
    measured=", ".join(f"{k.split('_')[0]} {v:.3f}" for k, v in est.items()) + f" (max gap {max_gap:.3f})",
    threshold="max pairwise gap <= 0.1 and every a in [0.35, 0.65]",
    passed=bool(max_gap <= 0.1 and all(0.35 <= v <= 0.65 for v in vals)),
    details={"a3_ci": a3.ci.get("a")},
)
claims.record(
    "small_budget_fit_extrapolates",
    statement="A Chinchilla-form fit on budgets <= C_max/10 predicts the compute-optimal loss at C_max within 2%",
    paper="Hoffmann et al. 2022 (Chinchilla predicted from smaller runs)",
    paper_value="Chinchilla 70B outperformed as predicted",
    measured=f"predicted {pred_loss:.4f} vs observed {obs_loss:.4f} ({100 * rel_err:.2f}%)",
    threshold="relative error <= 2%",
    passed=bool(rel_err <= 0.02),
)

# %% [markdown]
# ## Optional: fit published (N, D, loss) points
# Set `csv_path` to a CSV with columns `N`, `D`, `loss` (e.g. Epoch's `data/svg_extracted_data.csv` from
# `epoch-research/analyzing-chinchilla`, columns `Model Size`, `Training Tokens`, `loss`, which carries no
# license and is therefore not shipped). The fit uses the same Epoch procedure and reports a with a CI.

# %%
if csv_path:
    ext = pd.read_csv(csv_path)
    ext = ext.rename(columns={"Model Size": "N", "Training Tokens": "D", "Loss": "loss"})
    missing = {"N", "D", "loss"} - set(ext.columns)
    if missing:
        raise ValueError(f"{csv_path} lacks columns {sorted(missing)}; it needs N, D and loss (or Model Size, Training Tokens, loss).")
    ext_fit = fit_chinchilla(ext["N"], ext["D"], ext["loss"], n_boot=n_boot, seed=seed)
    print("published points:", {k: round(v, 4) for k, v in ext_fit.as_dict().items()}, ext_fit.ci)
    tracking.log_metrics({f"csv_fit/{k}": v for k, v in ext_fit.as_dict().items()})
else:
    print("csv_path is empty: skipping the fit of published points (pass csv_path=/path/to/points.csv with columns N, D, loss).")

# %% [markdown]
# ## Discussion
# * Our budgets (10^10–3·10^11 FLOPs) are ~10 orders of magnitude below Chinchilla's, models have ~10^3–10^5
#   non-embedding parameters and the data is a bigram Markov source, not text. The *balance* between N and D
#   (a ≈ 0.5) is what we test; the constants E, A, B, α, β are specific to this source.
# * FLOPs are exact (attention and unembedding included). At this scale the unembedding (2·d·V per token with
#   V = 128) is a large share of the cost for the smallest widths, which bends the isoFLOP lines relative to
#   C = 6ND; Porian et al. (2024) identify this as one reason Kaplan's and Hoffmann's exponents differ.
# * Approach 1 uses evaluation points along cosine runs whose horizon is the full run, so intermediate points are
#   not compute-optimal for their own FLOPs — a known bias (Hoffmann et al. used four horizons per size).
# * The "observed" compute-optimal loss at C_max is the IsoFLOP parabola's minimum, itself an estimate.
# * Compare the fitted E with the source's entropy rate H (printed above): E < H is physically impossible, so
#   an E below H means the parametric form is absorbing curvature of unconverged, tiny models into its
#   constants — the same identifiability problem Epoch documents for the published fit (their CIs are wide
#   for A and B too). The exponents and a are the better-determined quantities.
