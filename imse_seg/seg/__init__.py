"""The MMSegmentation adapter: registered components over :mod:`imse_seg.core`.

Import it (or list it in a config's ``custom_imports``) to register the components in mmseg's and
mmengine's registries.
"""
