"""The plugin's entry point (``tensorboard_plugins``: ``gradients =
tb_gradients.plugin:GradientsLoader``): the flags it needs, and the plugin."""

from tensorboard.plugins import base_plugin

from tb_gradients.format import metadata


class GradientsLoader(base_plugin.TBLoader):
    """Loads `GradientsPlugin` and makes TensorBoard keep all its samples."""

    def fix_flags(self, flags):
        """Keeps every sample of the ``gradients`` series, unless told not to.

        TensorBoard keeps only 10 (Python loader) or 100 (Rust loader)
        samples of a third-party tensor series by default, which would
        silently drop epochs. A value the user gave with
        ``--samples_per_plugin=gradients=N`` is left as it is.

        Args:
          flags: The parsed ``argparse.Namespace``; ``samples_per_plugin``
            is a dict there (a string is accepted and parsed, for flags set
            programmatically).
        """
        if not hasattr(flags, "samples_per_plugin"):
            return
        samples = _samples_dict(flags.samples_per_plugin)
        samples.setdefault(metadata.PLUGIN_NAME, 0)
        flags.samples_per_plugin = samples

    def load(self, context):
        """Returns the plugin (it needs nothing beyond the data provider)."""
        from tb_gradients.plugin import routes

        return routes.GradientsPlugin(context)


def _samples_dict(value):
    """``--samples_per_plugin`` as a dict, whatever form it arrived in."""
    if isinstance(value, dict):
        return dict(value)
    result = {}
    for token in str(value or "").split(","):
        if "=" in token:
            key, count = token.split("=", 1)
            try:
                result[key.strip()] = int(count)
            except ValueError:
                raise base_plugin.FlagsError(
                    "--samples_per_plugin needs plugin=count pairs. "
                    "Received: %r" % (value,))
    return result
