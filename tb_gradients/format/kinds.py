"""Every kind's decoding behind one selection point: `decode` checks one
stored value against the layout docs/FORMAT.md gives its kind (each kind's
module holds its own check) and raises `format.decoding.ReadError`
otherwise. Readers that do not use a kind's values still check them here,
so that every damaged value is named."""

from tb_gradients.format import gates
from tb_gradients.format import heatmap
from tb_gradients.format import metadata
from tb_gradients.format import steps
from tb_gradients.format import timesteps
from tb_gradients.format import variable_stats

DECODERS = {
    metadata.KIND_VARIABLE_STATS: variable_stats.decode,
    metadata.KIND_HEATMAP: heatmap.decode,
    metadata.KIND_STEPS: steps.decode,
    metadata.KIND_TIMESTEPS:
        lambda content, value: timesteps.decode_timesteps(value),
    metadata.KIND_TIMESTEP_NORMS:
        lambda content, value: timesteps.decode_timestep_norms(value),
    metadata.KIND_GATES: gates.decode_gates,
    metadata.KIND_GATE_HEATMAP: gates.decode_gate_heatmap,
}


def decode(content, value):
    """``value`` decoded as its series' ``kind`` (from the parsed
    ``content``, `metadata.read_plugin_metadata`) says.

    Raises:
      decoding.ReadError: when it does not have that kind's layout.
    """
    return DECODERS[content["kind"]](content, value)
