"""Gradient entanglement: per-pair gradients of log π(y_w|x) and log π(y_l|x), and what one margin-loss step does.

Yuan, Zeng, Wu, Wang, Wang, Leqi (2024), "A Common Pitfall of Margin-based Language Model Alignment: Gradient
Entanglement" (arXiv 2410.13828). A margin loss ℓ(log π_w − log π_l) (DPO: ℓ = −log σ(β·Δ)) moves the parameters
along ``−∇ℓ = −(ℓ_w ∇_w + ℓ_l ∇_l)`` with ``∇_w = ∇_θ log π(y_w|x)``, ``∇_l = ∇_θ log π(y_l|x)``,
``ℓ_w = ∂ℓ/∂log π_w`` and ``ℓ_l = ∂ℓ/∂log π_l``. After one SGD step of size η, to first order,

    Δ log π_w ≈ −η (ℓ_w ‖∇_w‖² + ℓ_l ⟨∇_w, ∇_l⟩)        Δ log π_l ≈ −η (ℓ_w ⟨∇_w, ∇_l⟩ + ℓ_l ‖∇_l‖²).

For DPO ℓ_l = −ℓ_w = c > 0, so ``Δ log π_w ∝ ‖∇_w‖² − ⟨∇_w,∇_l⟩`` and ``Δ log π_l ∝ ⟨∇_w,∇_l⟩ − ‖∇_l‖²``:
the chosen log-prob *falls* iff ⟨∇_w,∇_l⟩ > ‖∇_w‖² and the rejected one *rises* iff ⟨∇_w,∇_l⟩ > ‖∇_l‖² (the
paper's gradient condition; in between both move together).

Everything is computed per pair with ``torch.func`` (``functional_call`` + ``grad`` + ``vmap``) over all trainable
parameters, exactly as the official code's full-parameter gradients (`analysis/grad_plot.py`, summed response
log-probs), without materialising more than one chunk of flattened gradients at a time. The *measured* change is
that of an exact per-pair SGD step ``θ' = θ − η ∇ℓ`` (the same update as `optim.make_optimizer("sgd", η)` on the
pair alone, which a test checks), evaluated with the per-pair parameters under ``vmap``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from lossbook.alignment.losses import PreferenceLoss, sequence_logps
from lossbook.alignment.world import PreferenceData


def _param_dicts(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    return params, buffers


def _logp_fn(model: nn.Module, buffers: Mapping[str, Tensor]):
    def f(p: dict[str, Tensor], ids: Tensor, labels: Tensor) -> Tensor:
        logits = functional_call(model, (p, dict(buffers)), (ids.unsqueeze(0),))
        return sequence_logps(logits, labels.unsqueeze(0))[0]

    return f


def flat(g: Mapping[str, Tensor], names: list[str]) -> Tensor:
    """Concatenate a per-sample gradient dict {name: [B, *shape]} into [B, P] (parameters in `names` order)."""
    return torch.cat([g[n].reshape(g[n].shape[0], -1) for n in names], dim=1)


def per_sample_logp_grads(model: nn.Module, ids: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(log π(y_b|x_b) [B], ∇_θ log π(y_b|x_b) flattened [B, P]) for each sequence b, via vmap(grad).

    `ids` [B, T] token ids, `labels` [B, T] pre-shifted response labels (−100 elsewhere), as in
    `alignment.world.sequence_tensors`; log π is the summed response log-prob (`alignment.losses.sequence_logps`).
    Parameters are the model's trainable ones in `named_parameters()` order (tied weights counted once).
    """
    params, buffers = _param_dicts(model)
    f = _logp_fn(model, buffers)
    with warnings.catch_warnings():  # SDPA has no vmap batching rule on CPU: torch falls back to a loop and warns
        warnings.simplefilter("ignore", UserWarning)
        g, lp = vmap(grad_and_value(f), in_dims=(None, 0, 0))(params, ids, labels)
    return lp.detach(), flat(g, list(params)).detach()


def loss_slopes(loss: PreferenceLoss, chosen_logps: Tensor, rejected_logps: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
                **loss_kw: Any) -> tuple[Tensor, Tensor]:
    """(ℓ_w, ℓ_l) = (∂ℓ/∂log π_w, ∂ℓ/∂log π_l) per pair, by autograd through `loss` (a registry loss)."""
    cw = chosen_logps.detach().double().clone().requires_grad_(True)
    cl = rejected_logps.detach().double().clone().requires_grad_(True)
    total = loss(cw, cl, ref_chosen.double(), ref_rejected.double(), **loss_kw).sum()
    gw, gl = torch.autograd.grad(total, (cw, cl))
    return gw.to(chosen_logps.dtype), gl.to(chosen_logps.dtype)


def first_order_changes(ww: Tensor, wl: Tensor, ll: Tensor, slope_w: Tensor, slope_l: Tensor, lr: float) -> tuple[Tensor, Tensor]:
    """First-order (Δ log π_w, Δ log π_l) after one SGD step of size `lr` on each pair's loss:
    ``−η(ℓ_w‖∇_w‖² + ℓ_l⟨∇_w,∇_l⟩)`` and ``−η(ℓ_w⟨∇_w,∇_l⟩ + ℓ_l‖∇_l‖²)`` (Yuan et al. 2024, §3)."""
    return -lr * (slope_w * ww + slope_l * wl), -lr * (slope_w * wl + slope_l * ll)


def _step_eval(model: nn.Module, params: dict[str, Tensor], buffers: Mapping[str, Tensor], delta: Tensor, ids: Tensor,
               labels: Tensor) -> Tensor:
    names = list(params)
    sizes = [params[n].numel() for n in names]
    f = _logp_fn(model, buffers)

    def one(d: Tensor, x: Tensor, y: Tensor) -> Tensor:
        parts = torch.split(d, sizes)
        p = {n: params[n] + parts[i].view_as(params[n]) for i, n in enumerate(names)}
        return f(p, x, y)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return vmap(one)(delta, ids, labels).detach()


def entanglement_table(model: nn.Module, data: PreferenceData, loss: PreferenceLoss, lrs: list[float] | tuple[float, ...], *,
                       chunk: int = 64, **loss_kw: Any) -> dict[str, Any]:
    """Per pair: log-probs, ‖∇_w‖², ‖∇_l‖², ⟨∇_w,∇_l⟩, cosine, the loss slopes at the current point (the model is
    its own reference, as at the start of DPO), and for each lr in `lrs` the first-order and the measured one-step
    changes of log π_w and log π_l (exact per-pair SGD step). Chunks of `chunk` pairs bound the memory.

    Returns {"ww", "ll", "wl", "cos", "logp_w", "logp_l", "slope_w", "slope_l"} as numpy [N] and
    {"pred_w", "pred_l", "meas_w", "meas_l"}: {lr: numpy [N]}.
    """
    was = model.training
    model.eval()
    params, buffers = _param_dicts(model)
    out: dict[str, list] = {k: [] for k in ("ww", "ll", "wl", "logp_w", "logp_l", "slope_w", "slope_l")}
    steps: dict[str, dict[float, list]] = {k: {float(lr): [] for lr in lrs} for k in ("pred_w", "pred_l", "meas_w", "meas_l")}
    T = max(data.chosen_ids.shape[1], data.rejected_ids.shape[1])
    for i in range(0, len(data), chunk):
        d = data.subset(range(i, min(i + chunk, len(data))))
        cid, clab, rid, rlab = d.chosen_ids[:, :T], d.chosen_labels[:, :T], d.rejected_ids[:, :T], d.rejected_labels[:, :T]
        lw, gw = per_sample_logp_grads(model, cid, clab)
        lrj, gl = per_sample_logp_grads(model, rid, rlab)
        ww, ll, wl = (gw * gw).sum(1), (gl * gl).sum(1), (gw * gl).sum(1)
        sw, sl = loss_slopes(loss, lw, lrj, lw, lrj, **loss_kw)
        for k, v in (("ww", ww), ("ll", ll), ("wl", wl), ("logp_w", lw), ("logp_l", lrj), ("slope_w", sw), ("slope_l", sl)):
            out[k].append(v)
        g_loss = sw[:, None] * gw + sl[:, None] * gl  # ∇ℓ per pair (exact chain rule; the reference is constant)
        for lr in lrs:
            pw, pl = first_order_changes(ww, wl, ll, sw, sl, lr)
            delta = -lr * g_loss
            steps["pred_w"][float(lr)].append(pw)
            steps["pred_l"][float(lr)].append(pl)
            steps["meas_w"][float(lr)].append(_step_eval(model, params, buffers, delta, cid, clab) - lw)
            steps["meas_l"][float(lr)].append(_step_eval(model, params, buffers, delta, rid, rlab) - lrj)
    model.train(was)
    res: dict[str, Any] = {k: torch.cat(v).double().numpy() for k, v in out.items()}
    res["cos"] = res["wl"] / np.sqrt(res["ww"] * res["ll"])
    for k, by in steps.items():
        res[k] = {lr: torch.cat(v).double().numpy() for lr, v in by.items()}
    return res


def sign_agreement(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    """Per pair: True where the predicted and the measured change have the same sign."""
    return np.sign(pred) == np.sign(meas)


def first_order_error(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    """Per pair relative error of the first-order prediction, |measured − predicted| / |predicted|."""
    return np.abs(meas - pred) / np.maximum(np.abs(pred), 1e-30)


def condition_flags(ww: np.ndarray, wl: np.ndarray, ll: np.ndarray) -> dict[str, np.ndarray]:
    """The paper's DPO conditions per pair: ``chosen_falls`` ⟨∇_w,∇_l⟩ > ‖∇_w‖², ``rejected_rises``
    ⟨∇_w,∇_l⟩ > ‖∇_l‖², and ``entangled`` (either)."""
    cf, rr = wl > ww, wl > ll
    return {"chosen_falls": cf, "rejected_rises": rr, "entangled": cf | rr}


def type_summary(table: Mapping[str, Any], types: Sequence[str], lr: float) -> pd.DataFrame:
    """Per pair type: mean cosine, the shares of pairs meeting the DPO conditions (`condition_flags`), the shares
    whose measured one-step Δ log π_w < 0 and Δ log π_l > 0 at `lr`, and the share of pairs whose two signs
    the first-order prediction got right."""
    t = np.asarray(types)
    c = condition_flags(table["ww"], table["wl"], table["ll"])
    agree = sign_agreement(table["pred_w"][lr], table["meas_w"][lr]) & sign_agreement(table["pred_l"][lr], table["meas_l"][lr])
    rows = {}
    for ty in dict.fromkeys(t.tolist()):
        k = t == ty
        rows[ty] = {"pairs": int(k.sum()), "cos": table["cos"][k].mean(), "pred chosen falls": c["chosen_falls"][k].mean(),
                    "pred rejected rises": c["rejected_rises"][k].mean(), "meas chosen falls": (table["meas_w"][lr][k] < 0).mean(),
                    "meas rejected rises": (table["meas_l"][lr][k] > 0).mean(), "sign agreement": agree[k].mean()}
    return pd.DataFrame(rows).T.rename_axis("pair type")


def world_entanglement(table: Mapping[str, Any], types: Sequence[str], lr: float, similar: Sequence[str], dissimilar: Sequence[str]) -> dict[str, float]:
    """One world's replicate statistics: both-sign agreement at `lr`, the median first-order relative error, and
    the similar − dissimilar differences of the mean cosine and of the measured chosen-falls share (the pair types
    of each group pooled)."""
    t = np.asarray(types)
    s, d = np.isin(t, list(similar)), np.isin(t, list(dissimilar))
    agree = sign_agreement(table["pred_w"][lr], table["meas_w"][lr]) & sign_agreement(table["pred_l"][lr], table["meas_l"][lr])
    err = np.r_[first_order_error(table["pred_w"][lr], table["meas_w"][lr]), first_order_error(table["pred_l"][lr], table["meas_l"][lr])]
    falls = table["meas_w"][lr] < 0
    return {"agreement": float(agree.mean()), "median_rel_err": float(np.median(err)),
            "cos_similar": float(table["cos"][s].mean()), "cos_dissimilar": float(table["cos"][d].mean()),
            "cos_gap": float(table["cos"][s].mean() - table["cos"][d].mean()),
            "falls_similar": float(falls[s].mean()), "falls_dissimilar": float(falls[d].mean()),
            "falls_gap": float(falls[s].mean() - falls[d].mean())}


def training_trace(policy: nn.Module, reference: nn.Module, data: PreferenceData, cfg: Any, probe: PreferenceData, every: int, *,
                   device: str | torch.device = "cpu") -> dict[str, Any]:
    """Train `policy` in place with `alignment.preference.train_preference(cfg)` on `data` and, before every
    `every`-th optimizer step and after the last, record on the `probe` pairs the mean log π_w and log π_l and
    the per-pair gradient cosine (`entanglement_table`, no step): Yuan et al.'s Fig. 1 (chosen and rejected
    log-probs over training) and their cosine-over-checkpoints measurement, on one run.

    Returns {"step": [K], "chosen": [K], "rejected": [K], "cos": [K, n_probe], "loss": per-step training loss}.
    """
    from lossbook.alignment.preference import train_preference
    from lossbook.alignment.registry import get_preference_loss

    loss = get_preference_loss(cfg.loss)
    rec: dict[str, list] = {"step": [], "chosen": [], "rejected": [], "cos": []}

    def probe_now(step: int) -> None:
        tab = entanglement_table(policy, probe, loss, [], beta=cfg.beta, **cfg.loss_kwargs)
        rec["step"].append(step)
        rec["chosen"].append(float(tab["logp_w"].mean()))
        rec["rejected"].append(float(tab["logp_l"].mean()))
        rec["cos"].append(tab["cos"])

    probe = probe.to(device)
    hist = train_preference(policy, reference, data, cfg, device=device, callback=lambda step, _m: probe_now(step) if step % every == 0 else None)
    probe_now(int(hist["n_steps"]))
    return {"step": np.array(rec["step"]), "chosen": np.array(rec["chosen"]), "rejected": np.array(rec["rejected"]),
            "cos": np.stack(rec["cos"]), "loss": np.array(hist["loss"][: hist["n_steps"]])}


def synchronized_share(chosen: np.ndarray, rejected: np.ndarray) -> float:
    """Share of consecutive intervals in which the mean chosen and the mean rejected log-probs moved the same way
    (both up or both down): Yuan et al.'s "synchronized increases and decreases"."""
    dc, dr = np.diff(np.asarray(chosen, dtype=float)), np.diff(np.asarray(rejected, dtype=float))
    return float(np.mean(np.sign(dc) == np.sign(dr))) if dc.size else float("nan")
