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

# A served asset name: one path component, no leading dot.
_ASSET_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def asset_map(directory):
    """The fixed ``name -> content type`` map of the static assets.

    Built once from a directory listing so that a request can only ever
    reach a file that existed under a known name when the plugin was
    loaded: there is no path in a request that is joined to a directory.

    Args:
      directory: The folder holding the frontend's ``*.js`` / ``*.css``.

    Returns:
      A dict from file name to media type; empty if the folder is missing.
    """
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return {}
    result = {}
    for name in names:
        content_type = ASSET_CONTENT_TYPES.get(os.path.splitext(name)[1])
        if content_type is None or not _ASSET_NAME.match(name):
            continue
        if os.path.isfile(os.path.join(directory, name)):
            result[name] = content_type
    return result
