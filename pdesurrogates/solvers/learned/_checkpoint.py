"""Loading the trained network of a learned preconditioner (one checkpoint format for everything).

Networks are saved with :func:`pdesurrogates.models.save_checkpoint` and registered in
:data:`pdesurrogates.models.NETWORKS`, so :func:`pdesurrogates.models.load_checkpoint` rebuilds them;
checkpoints of the first, unversioned layout load too.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from pdesurrogates.models import find_checkpoint, load_checkpoint


def load_network(path: str | Path, network_class: type) -> nn.Module:
    """The ``network_class`` network saved in ``path`` (a run or checkpoint directory), in eval mode."""
    checkpoint = find_checkpoint(path)
    network = load_checkpoint(checkpoint).model
    if not isinstance(network, network_class):
        raise ValueError(  # noqa: TRY004 (a user file of the wrong kind)
            f"{checkpoint} holds a {type(network).__name__}, not a {network_class.__name__}")
    return network.eval()
