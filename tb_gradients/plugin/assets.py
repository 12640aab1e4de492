"""The plugin's static assets: which frontend files it serves, and as what.

The names are fixed when the plugin is loaded, so a request can only ever
reach one of them (docs/API.md, Static assets).
"""

import os
import re

# Static assets: only these extensions are served, with these media types.
ASSET_CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
}

# One component of a served asset's path: no leading dot, plain characters.
_ASSET_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

# How deep the frontend's folders go (``views/recurrent/gates.js``).
MAX_ASSET_DEPTH = 3


def asset_map(directory):
    """The fixed ``name -> content type`` map of the static assets.

    Built once from a walk of the folder so that a request can only ever
    reach a file that existed under a known name when the plugin was
    loaded: there is no path in a request that is joined to a directory.
    A name is the file's path below ``directory`` with ``/`` separators
    (``index.js``, ``lib/charts.js``); every component is a plain name
    without a leading dot, and folders deeper than `MAX_ASSET_DEPTH` or
    reached through a symbolic link are not walked.

    Args:
      directory: The folder holding the frontend's ``*.js`` / ``*.css``.

    Returns:
      A dict from name to media type; empty if the folder is missing.
    """
    result = {}
    _add_assets(directory, (), result)
    return dict(sorted(result.items()))


def _add_assets(folder, prefix, result):
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return
    for name in names:
        if not _ASSET_NAME.match(name):
            continue
        path = os.path.join(folder, name)
        if os.path.islink(path):
            continue
        if os.path.isdir(path):
            if len(prefix) + 1 < MAX_ASSET_DEPTH:
                _add_assets(path, prefix + (name,), result)
            continue
        content_type = ASSET_CONTENT_TYPES.get(os.path.splitext(name)[1])
        if content_type is not None and os.path.isfile(path):
            result["/".join(prefix + (name,))] = content_type
