"""The base of the route families' handlers (`listing`, `stats`,
`heatmaps`, `recurrent`, `findings`): each reads through the plugin's one
`plugin.reading.PluginData`, so that they share its caches."""


class Handler:
    """Serves one family of routes from a `plugin.reading.PluginData`."""

    def __init__(self, data):
        self._data = data
