"""Every preference loss by name: one literal dict over `alignment.losses` (DPO, IPO) and `alignment.zoo`.

All entries share the `alignment.losses.PreferenceLoss` signature (summed sequence log-probs in, per-pair loss
out). To try a new loss in `alignment.preference.train_preference`, add it by assignment:
``PREFERENCE_LOSSES["mine"] = my_loss``.
"""

from __future__ import annotations

from lossbook import registry
from lossbook.alignment import losses as L
from lossbook.alignment import zoo as Z
from lossbook.alignment.losses import PreferenceLoss

PREFERENCE_LOSSES: dict[str, PreferenceLoss] = {
    "dpo": L.dpo_loss,
    "ipo": L.ipo_loss,
    "hinge": Z.hinge_loss,
    "cdpo": Z.cdpo_loss,
    "robust_dpo": Z.robust_dpo_loss,
    "ln_dpo": Z.ln_dpo_loss,
    "simpo": Z.simpo_loss,
    "nca": Z.nca_loss,
    "apo_zero": Z.apo_zero_loss,
    "apo_down": Z.apo_down_loss,
    "sppo_hard": Z.sppo_hard_loss,
    "fdpo_reverse_kl": Z.fdpo_reverse_kl_loss,
    "fdpo_forward_kl": Z.fdpo_forward_kl_loss,
    "fdpo_js": Z.fdpo_js_loss,
    "fdpo_alpha": Z.fdpo_alpha_loss,
    "rpo": Z.rpo_loss,
    "bco_pair": Z.bco_pair_loss,
    "kto_pair": Z.kto_pair_loss,
}
ZOO_LOSSES: tuple[str, ...] = tuple(n for n in PREFERENCE_LOSSES if n not in ("dpo", "ipo"))
"""The zoo's names (everything but DPO and IPO), in table order."""


def get_preference_loss(name: str) -> PreferenceLoss:
    """The loss called `name`; KeyError naming the valid ones otherwise."""
    return registry.lookup(PREFERENCE_LOSSES, name, "preference loss")
