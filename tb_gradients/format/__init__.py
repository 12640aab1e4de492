"""The event format of docs/FORMAT.md, one module per summary kind.

`metadata` holds what every kind shares (the plugin's name, the format
version, the kinds, sources and tags, the versioned plugin metadata); each
kind's module holds its columns or channels, the function that writes it
into a `writer.WindowBatch` and what decodes it again: `variable_stats`,
`scalars` (the whole-model figures), `heatmap`, `histogram`, `steps`,
`timesteps`, `gates`, `findings_table`. Written through `tb_gradients.writer`,
read by the plugin and the reader."""
