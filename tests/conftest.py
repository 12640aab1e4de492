"""Shared fixtures: quiet TensorFlow, deterministic ops, small real models."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    import keras

    keras.utils.clear_session()
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="module")
def chromium_path():
    """Debian's Chromium: a failure under CI (it must be installed), a skip
    on a developer machine without it."""
    from tests import browser_harness as harness

    if not os.path.exists(harness.CHROMIUM):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(harness.chromium_missing_message())
        pytest.skip(harness.chromium_missing_message())
    return harness.CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    from tests import browser_harness as harness

    with sync_playwright() as playwright:
        browser = harness.launch_chromium(playwright)
        yield browser
        browser.close()


# The plugin test modules each define a module-scoped `logdir`; these build
# TensorBoard's WSGI app and an independent event reader on it.


@pytest.fixture(scope="module")
def client(logdir):
    from werkzeug import test as werkzeug_test

    from tests.test_plugin_wsgi import make_app

    app, _, _ = make_app(logdir)
    return werkzeug_test.Client(app)


@pytest.fixture(scope="module")
def events(logdir):
    """Independent reading of every run: run name -> eventfiles.load()."""
    from tests import eventfiles

    cache = {}

    def load(run):
        if run not in cache:
            cache[run] = eventfiles.load(os.path.join(logdir, run))
        return cache[run]

    return load


@pytest.fixture
def guard_log():
    """The requests the Gradients plugin's last-resort guard answered during
    one test (tests.test_plugin_wsgi.GuardLog)."""
    from tests.test_plugin_wsgi import GuardLog

    with GuardLog() as log:
        yield log
