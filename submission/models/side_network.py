"""A network trained by its own optimiser, beside the model (FactorVAE's discriminator, IFCVAE's attribute adversary).

The trainer builds one Adam over ``model.parameters() + objective.parameters()`` that require grad. A side network's
parameters are frozen (``requires_grad=False``) except inside ``update``, so the trainer's optimiser never holds them
and the VAE loss reaches the encoder through the side network without training it. Its weights sit in the objective's
state dict and its optimiser's state in the extra state, so checkpoints and resume carry both.
"""
import torch
from torch import nn


class SideNetwork(nn.Module):
    def __init__(self, network: nn.Module, learning_rate: float, betas=(0.9, 0.999)):
        super().__init__()
        self.network = network
        self._set_trainable(False)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=learning_rate, betas=tuple(betas))

    def _set_trainable(self, flag: bool) -> None:
        for p in self.network.parameters():
            p.requires_grad_(flag)

    def forward(self, inputs):
        return self.network(inputs)

    def update(self, loss_fn) -> torch.Tensor:
        """One optimiser step on ``loss_fn(network)`` (inputs must be detached); returns the loss, detached, on the
        device (nothing read back)."""
        self._set_trainable(True)
        try:
            device = next(self.network.parameters()).device.type
            with torch.autocast(device, enabled=False):
                loss = loss_fn(self.network)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        finally:
            self._set_trainable(False)
        return loss.detach()

    def get_extra_state(self):
        return {"optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state):
        self.optimizer.load_state_dict(state["optimizer"])


def mlp(inputs: int, outputs: int, hidden: int, layers: int, negative_slope: float = 0.2) -> nn.Sequential:
    """``layers`` linear layers of width ``hidden`` with leaky ReLU, then a linear output layer."""
    modules, width = [], inputs
    for _ in range(layers):
        modules += [nn.Linear(width, hidden), nn.LeakyReLU(negative_slope)]
        width = hidden
    return nn.Sequential(*modules, nn.Linear(width, outputs))
