"""The end-to-end layer: every module here touches keys.

The relay never imports this package; a test checks that it cannot.
"""
