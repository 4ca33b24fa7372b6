"""The real tiny pipeline seen through a test's lens: a wrapper that alters calls, never the model.

Every attribute a wrapper does not define is the real pipeline's (its config, its native size), so prodvid
treats it as the pipeline it wraps; the tests change only what a call returns or whether it fails.
"""

from __future__ import annotations


class Wrapped:
    """The real pipeline; subclasses override `__call__`."""

    def __init__(self, pipe):
        self.pipe, self.calls = pipe, 0

    def __call__(self, **kwargs):
        self.calls += 1
        return self.pipe(**kwargs)

    def __getattr__(self, name):
        return getattr(self.pipe, name)


class Recording(Wrapped):
    """Records the (width, height) of every call."""

    def __init__(self, pipe):
        super().__init__(pipe)
        self.sizes = []

    def __call__(self, **kwargs):
        self.sizes.append((kwargs["width"], kwargs["height"]))
        return super().__call__(**kwargs)


class FailAfter(Wrapped):
    """Fails once it has made `calls` pipeline calls, like a crash in the middle of a run."""

    def __init__(self, pipe, calls: int):
        super().__init__(pipe)
        self.fail_at = calls

    def __call__(self, **kwargs):
        if self.calls >= self.fail_at:
            raise RuntimeError(f"pipeline failed after {self.calls} calls")
        return super().__call__(**kwargs)
