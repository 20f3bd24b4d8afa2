"""Shared pytest setup: import ainnoface_d2 first (it applies the detectron2 compat shims)."""

import ainnoface_d2  # noqa: F401
