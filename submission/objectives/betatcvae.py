"""beta-TCVAE (Chen et al. 2018, "Isolating sources of disentanglement in VAEs"): the ELBO plus (beta - 1) * TC, with TC
estimated on the minibatch (``total_correlation.py``). Optional controlled capacity on the KL: gamma |KL - C|
(Burgess et al. 2018), C a schedule (by steps or by the run's progress, ``submission.schedules``).

It is a ``Composite`` with one ``TotalCorrelationRegularizer``: the same objective as writing that composite by hand.
"""
import gin

from .base import register_objective
from .composite import Composite, TotalCorrelationRegularizer


@register_objective("betatcvae")
@gin.configurable
class BetaTCVAE(Composite):
    name = "betatcvae"

    def __init__(self, beta=2.0, estimator: str = "mss", dataset_size: int = None, capacity=None,
                 capacity_weight: float = 1.0):
        super().__init__(regularizers=[TotalCorrelationRegularizer(weight=float(beta) - 1.0, estimator=estimator,
                                                                   dataset_size=dataset_size)],
                         beta=1.0, capacity=capacity, capacity_weight=capacity_weight)
        self.beta_tc = float(beta)

    @property
    def tc(self) -> TotalCorrelationRegularizer:
        return self.regularizers[0]

    @property
    def dataset_size(self):
        return self.tc.dataset_size
