"""Reading recorded runs back, offline: the series of one source
(`series`), the findings engine over them (`findings`), event files into
series (`reader`), and the ``diagnose`` command (`diagnose`). The callback
and the plugin use the same series and findings."""
