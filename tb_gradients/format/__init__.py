"""The event format of docs/FORMAT.md: tags, versioned plugin metadata and
the constants every kind shares (`metadata`), and per summary kind what
needs more than a constant: a statistics vector's columns (`variable_stats`),
the heatmap's geometry and uint8 decoding (`heatmap`), histogram rows
(`histogram`), the pooled timestep view (`timesteps`). Written by
`tb_gradients.writer`, read by the plugin and the reader."""
