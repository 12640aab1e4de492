"""The "Gradients" TensorBoard plugin: its loader (the entry point), its
routes over the data provider, one handler module per route family
(`listing`, `stats`, `heatmaps`, `recurrent`, `findings`), and the request
parameters, caches and static assets they share."""

from tb_gradients.plugin.loader import GradientsLoader
from tb_gradients.plugin.routes import ASSETS
from tb_gradients.plugin.routes import GradientsPlugin

__all__ = ["ASSETS", "GradientsLoader", "GradientsPlugin"]
