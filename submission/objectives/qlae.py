"""QLAE (Hsu, Dorrell, Whittington, Wu & Finn 2023, "Disentanglement via Latent Quantization", Sec. 3 and eq. 2):
reconstruct from the quantized code, pull the codebooks toward the codes and the codes toward the codebooks.

    loss = reconstruction(x, decoder(z_hat))
           + P * lambda_q * mean_d (stop_gradient(z_c[d]) - z_q[d])^2      (quantization: moves the codebook values)
           + P * lambda_c * mean_d (z_c[d] - stop_gradient(z_q[d]))^2      (commitment: moves the encoder)

The paper's reconstruction is the binary cross-entropy averaged over the P pixel values of an image; the kit's is summed
over them, so both weights are multiplied by P to keep the paper's balance (lambda_q = lambda_c = 0.01). The paper also
trains with AdamW, weight decay 0.1, learning rate 1e-3 and gradients clipped at norm 1 (the recipe,
``submission/configs/qlae.gin``), and uses twice as many latent dimensions as the dataset has factors, 10 values each.
The representation is the continuous code z_c (``submission.models.quantized``).
"""
import gin

from .base import Objective, register_objective


@register_objective("qlae")
@gin.configurable("QLAE")
class QLAEObjective(Objective):
    name = "qlae"

    def __init__(self, quantization_weight: float = 0.01, commitment_weight: float = 0.01):
        super().__init__()
        self.quantization_weight, self.commitment_weight = float(quantization_weight), float(commitment_weight)

    def forward(self, model, x, factors, step):
        out = model(x)
        continuous, quantized = out["mu"].float(), out["z_quantized"].float()
        pixels = x[0].numel()
        quantization = ((continuous.detach() - quantized) ** 2).mean(dim=1).mean()
        commitment = ((continuous - quantized.detach()) ** 2).mean(dim=1).mean()
        self.record(codebook_spread=model.codebooks.values.detach().std(dim=1).mean())
        return {"reconstruction": self.reconstruction(out["logits"], x),
                "quantization": pixels * self.quantization_weight * quantization,
                "commitment": pixels * self.commitment_weight * commitment}
