"""CVAE and IFCVAE on the dataset's factors as attributes (models: ``submission.models.conditional``).

CVAE (Sohn et al. 2015, eq. 4): reconstruction of x from (z, y) + beta KL(q(z|x) || N(0, I)).
IFCVAE (Creswell et al. 2017, sec. 3): CVAE + attribute_weight * CE(y_hat(x), y) (the encoder learns to predict y)
+ adversary_weight * sum_f KL(A_f(z) || Uniform(K_f)): an adversary A, trained after each step with its own Adam to
predict y from z, and the encoder pushes its prediction towards uniform, so z keeps no information about y. (The
paper's encoder maximises the adversary's error; the distance to uniform is a bounded form of the same aim.)
"""
import math

import gin
import torch.nn.functional as F

from submission.models.conditional import split_attribute_logits
from submission.models.side_network import SideNetwork, mlp

from .base import Objective, register_objective


def attribute_cross_entropy(logits, factors, sizes):
    """sum over factors of the mean cross-entropy of each factor's logit block."""
    return sum(F.cross_entropy(block.float(), factors[:, f].long())
               for f, block in enumerate(split_attribute_logits(logits, sizes)))


def kl_to_uniform_per_factor(logits, sizes):
    """sum_f KL(softmax(block_f) || Uniform(K_f)) = sum_f [log K_f - H(block_f)], averaged over the batch."""
    total = 0.0
    for block, k in zip(split_attribute_logits(logits.float(), sizes), sizes):
        log_p = F.log_softmax(block, dim=1)
        total = total + (math.log(k) + (log_p.exp() * log_p).sum(1)).mean()
    return total


def check_model(model, dataset_sizes, need_attribute_head: bool, method: str):
    sizes = getattr(model, "attribute_sizes", None)
    if sizes is None or (need_attribute_head and model.attribute_head is None):
        raise ValueError(f"the {method} objective needs model.kind = 'cvae'"
                         f"{' with predict_attributes = True' if need_attribute_head else ''}")
    if dataset_sizes is not None and list(sizes) != list(dataset_sizes):
        raise ValueError(f"the conditional model's attribute_sizes {list(sizes)} differ from the dataset's factor sizes "
                         f"{list(dataset_sizes)}: bind model.options = {{'attribute_sizes': {list(dataset_sizes)}}}")


@register_objective("cvae")
@gin.configurable
class CVAE(Objective):
    name = "cvae"
    needs_attribute_head = False

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = float(beta)
        self.dataset_sizes = None

    def setup(self, dataset) -> None:
        self.dataset_sizes = [int(v) for v in dataset.factors_num_values]

    def elbo(self, model, x, factors):
        check_model(model, self.dataset_sizes, self.needs_attribute_head, self.name)
        out = model(x, factors)
        kl = self.gaussian_kl(out["mu"], out["logvar"]).sum()
        self.record(kl=kl.detach())
        return out, {"reconstruction": self.reconstruction(out["logits"], x), "kl": self.beta * kl}

    def forward(self, model, x, factors, step):
        return self.elbo(model, x, factors)[1]


@register_objective("ifcvae")
@gin.configurable
class IFCVAE(CVAE):
    name = "ifcvae"
    needs_attribute_head = True

    def __init__(self, beta: float = 1.0, attribute_weight: float = 10.0, adversary_weight: float = 10.0,
                 style_dim: int = 3, attribute_sizes=(6, 6, 2, 3, 3, 40, 40), hidden: int = 256, layers: int = 2,
                 learning_rate: float = 1e-4):
        super().__init__(beta)
        self.attribute_weight, self.adversary_weight = float(attribute_weight), float(adversary_weight)
        self.style_dim, self.attribute_sizes = int(style_dim), [int(k) for k in attribute_sizes]
        self.adversary = SideNetwork(mlp(self.style_dim, sum(self.attribute_sizes), hidden, layers), learning_rate)
        self._last = None

    def forward(self, model, x, factors, step):
        out, terms = self.elbo(model, x, factors)
        z = out["z"].float()
        if z.shape[1] != self.style_dim or list(model.attribute_sizes) != self.attribute_sizes:
            raise ValueError(f"IFCVAE.style_dim={self.style_dim}, attribute_sizes={self.attribute_sizes} but the model "
                             f"has {z.shape[1]} style dims and sizes {list(model.attribute_sizes)}: expected the same")
        attribute_ce = attribute_cross_entropy(out["attribute_logits"], factors, self.attribute_sizes)
        leak = kl_to_uniform_per_factor(self.adversary(z), self.attribute_sizes)
        self._last = (z.detach(), factors.detach())
        self.record(attribute_ce=attribute_ce.detach(), adversary_leak=leak.detach())
        terms["attributes"] = self.attribute_weight * attribute_ce
        terms["adversary"] = self.adversary_weight * leak
        return terms

    def after_step(self, step: int) -> None:
        if self._last is None:
            return
        z, factors = self._last
        loss = self.adversary.update(lambda net: attribute_cross_entropy(net(z), factors, self.attribute_sizes))
        self.record(adversary_ce=loss)
        self._last = None
